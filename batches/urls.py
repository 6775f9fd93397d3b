from django.urls import path

from batches import apis

urlpatterns = [
    path("cache", apis.UploadUrlsApi.as_view(), name="create_upload_url"),
    path("cache/<str:handler>", apis.UploadUrlApi.as_view(), name="invalidate_upload_url"),
    path("uploads/<str:token>", apis.UploadFileApi.as_view(), name="upload_file"),
    path("downloads/<str:token>", apis.DownloadFileApi.as_view(), name="download_file"),
    path("downloads/partial/<str:token>", apis.PartialDownloadApi.as_view(), name="download_partial"),
    path("batches", apis.BatchesApi.as_view(), name="batches"),
    path("batches/<str:batch>", apis.BatchApi.as_view(), name="batch"),
    path("batches/<str:batch>/retry", apis.BatchRetryApi.as_view(), name="retry_batch"),
]

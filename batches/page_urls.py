"""The HTML pages, included under /ui/ (LOGIN_URL and LOGIN_REDIRECT_URL point here)."""

from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.generic import RedirectView

from batches import views
from permissions.signin import SignInForm

urlpatterns = [
    path(
        "",
        RedirectView.as_view(pattern_name="batch_list_page", http_method_names=["get", "head"]),
        name="pages_home",
    ),
    path(
        "login",
        auth_views.LoginView.as_view(
            template_name="pages/login.html",
            redirect_authenticated_user=True,
            authentication_form=SignInForm,
            # FormView would also take PUT as a POST.
            http_method_names=["get", "head", "post"],
        ),
        name="login",
    ),
    path("logout", auth_views.LogoutView.as_view(next_page="login"), name="logout"),
    path("batches", views.batch_list_page, name="batch_list_page"),
    path("batches/new", views.batch_new_page, name="batch_new_page"),
    path("batches/<uuid:batch_id>", views.batch_detail_page, name="batch_page"),
    path("batches/<uuid:batch_id>/state", views.batch_state_json, name="batch_state"),
    path("batches/<uuid:batch_id>/cancel", views.batch_cancel_page, name="batch_cancel_page"),
    path("batches/<uuid:batch_id>/pause", views.batch_pause_page, name="batch_pause_page"),
    path("batches/<uuid:batch_id>/resume", views.batch_resume_page, name="batch_resume_page"),
    path("batches/<uuid:batch_id>/delete", views.batch_delete_page, name="batch_delete_page"),
    path("batches/<uuid:batch_id>/retry", views.batch_retry_page, name="batch_retry_page"),
]

"""A Content-Security-Policy on every answer: pages load scripts, styles, fonts and data only
from the site itself, so a page works with no internet and injected markup cannot pull code
from elsewhere. Django 5.2 has no built-in CSP, hence this middleware.

The one exception is the upload form's PUT when files live in S3: the browser sends the file
straight to the bucket, so that origin is allowed to be connected to (and nothing more).
"""

from urllib.parse import urlsplit

from django.conf import settings


def storage_origins() -> list[str]:
    """Origins the browser PUTs uploads to and downloads results from, beside the site."""
    if not getattr(settings, "AWS_STORAGE_BUCKET_NAME", ""):
        return []
    endpoint = settings.STORAGES["default"].get("OPTIONS", {}).get("endpoint_url", "")
    if endpoint:
        parts = urlsplit(endpoint)
        return [f"{parts.scheme}://{parts.netloc}"]
    return ["https://*.amazonaws.com"]


def content_security_policy() -> str:
    connect = " ".join(["'self'", *storage_origins()])
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            # Swagger UI's stylesheet draws its icons as data: URLs.
            "img-src 'self' data:",
            "font-src 'self' data:",
            f"connect-src {connect}",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.policy = content_security_policy()

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", self.policy)
        return response

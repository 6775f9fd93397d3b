"""Who is asking, and where a URL we hand out points: never taken from a header a client can
forge unless configuration says to trust it."""

import ipaddress

from django.conf import settings


def client_ip(request) -> str:
    """The client's address. `X-Forwarded-For` counts only behind TRUSTED_PROXY_COUNT proxies
    (each appends the address it saw), and then only the entry the nearest trusted proxy wrote:
    anything left of it the client could have sent itself. The same rule as DRF's NUM_PROXIES,
    which is set from the same setting, so the throttles and the sign-in lockout agree."""
    remote = request.META.get("REMOTE_ADDR", "")
    count = settings.TRUSTED_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if count > 0 and forwarded:
        addresses = [address.strip() for address in forwarded.split(",") if address.strip()]
        if addresses:
            return addresses[-min(count, len(addresses))]
    return remote


def client_source(request) -> str:
    """The client as throttles and lockouts count it: its IPv4 address, or its IPv6 /64 (one
    host usually holds a whole /64, so single IPv6 addresses would be free new sources)."""
    address = client_ip(request)
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if parsed.version == 4:
        return str(parsed)
    if parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(ipaddress.ip_network(f"{parsed}/64", strict=False))


def public_base_url(request) -> str:
    """The base of absolute URLs we return (upload and download URLs): PUBLIC_URL when set;
    otherwise the request's host, which Django has checked against ALLOWED_HOSTS — settings
    refuse a wildcard ALLOWED_HOSTS without PUBLIC_URL, so that host is never unchecked."""
    if settings.PUBLIC_URL:
        return settings.PUBLIC_URL.rstrip("/") + "/"
    return request.build_absolute_uri("/")

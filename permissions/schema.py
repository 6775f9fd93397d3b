"""How the API secret appears in the OpenAPI schema."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class SecretAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "permissions.authentication.SecretAuthentication"
    name = "secret"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "The API secret, raw (as Trusted Twin's client sends it) or as `Bearer <secret>`.",
        }

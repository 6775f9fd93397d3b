"""Reading a request's input in the API views."""


def validated(serializer_class, data) -> dict:
    """The serializer's validated data; a ValidationError (400) otherwise."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data

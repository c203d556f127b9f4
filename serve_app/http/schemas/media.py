"""Images in requests: `data:` URLs, base64 blocks and plain URLs, into `ImagePart`.

The gateway never fetches a URL; it only checks its scheme. Inline data is kept as base64
text (never decoded or logged here); its decoded size is checked against
`ingress.max_image_bytes` in `serve_app.core.capabilities`, where the config is.
"""

from serve_app.contracts.wire import ImagePart

IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
URL_SCHEMES = ("https://", "http://")


def check_media_type(media_type: str) -> str:
    media_type = media_type.strip().lower()
    if media_type not in IMAGE_MEDIA_TYPES:
        raise ValueError(
            f"media type {media_type!r} is not a supported image type "
            f"({', '.join(IMAGE_MEDIA_TYPES)})"
        )
    return media_type


def image_from_data_url(url: str, detail: str | None = None) -> ImagePart:
    """`data:image/png;base64,AAAA` -> media type and base64 data."""
    header, sep, data = url.partition(",")
    if not sep or not header.endswith(";base64"):
        raise ValueError("a data: URL image must be base64 (data:<image type>;base64,<data>)")
    media_type = check_media_type(header[len("data:") : -len(";base64")])
    if not data:
        raise ValueError("the data: URL holds no image data")
    return ImagePart(media_type=media_type, data=data, detail=detail)


def image_from_url(url: str, detail: str | None = None) -> ImagePart:
    if not url.startswith(URL_SCHEMES):
        raise ValueError("an image URL must be https://, http:// or a base64 data: URL")
    return ImagePart(url=url, detail=detail)


def image_from_base64(media_type: str, data: str) -> ImagePart:
    if not data:
        raise ValueError("the image source holds no data")
    return ImagePart(media_type=check_media_type(media_type), data=data)


def data_url(image: ImagePart) -> str:
    """The OpenAI form of an inline image."""
    return f"data:{image.media_type};base64,{image.data}"

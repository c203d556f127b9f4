"""Wire text must be real Unicode: JSON may escape a lone surrogate (`"\\ud800"`), Python's
JSON decoder accepts it, and pydantic lets it through in unions and lists of strings
(`str | list[str]`, `list[str]`). Such a string cannot be encoded as UTF-8, so it would fail
later, as a 5xx, in a tokenizer, a provider SDK, the key store or the response encoder.
The wire models reject it up front as a 400 naming the field.

Imports nothing from the project.
"""

from typing import Any

from pydantic_core import PydanticCustomError

ERROR_TYPE = "string_unicode"


def _is_unicode(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def lone_surrogate_path(value: Any) -> str | None:
    """Dotted path of a string holding a lone surrogate (for a bad key: the path of its
    object, so the path itself is clean), else None. Iterative: request bodies may nest as
    deep as the JSON decoder allows."""
    pending: list[tuple[Any, tuple[str, ...]]] = [(value, ())]
    while pending:
        item, path = pending.pop()
        if isinstance(item, str):
            if not _is_unicode(item):
                return ".".join(path)
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and not _is_unicode(key):
                    return ".".join(path)
                pending.append((child, (*path, str(key))))
        elif isinstance(item, list | tuple):
            pending.extend((child, (*path, str(i))) for i, child in enumerate(item))
    return None


def reject_lone_surrogates(data: Any) -> Any:
    """For `model_validator(mode="before")`: the data unchanged, or a `string_unicode` error
    whose context names the offending field (relative to the model)."""
    path = lone_surrogate_path(data)
    if path is not None:
        raise PydanticCustomError(
            ERROR_TYPE,
            "Input should be valid Unicode text (it holds a lone surrogate)",
            {"field": path},
        )
    return data

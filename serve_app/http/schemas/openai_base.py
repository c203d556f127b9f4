"""The base of every OpenAI wire model: strict (unknown fields are refused, as OpenAI's
"Unrecognized request argument"), finite numbers, valid Unicode."""

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from serve_app.http.schemas.unicode import reject_lone_surrogates


class OpenAIWireModel(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        return reject_lone_surrogates(data)

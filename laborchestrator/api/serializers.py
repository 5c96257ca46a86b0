from __future__ import annotations

import copy
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from rest_framework import serializers
from rest_framework.settings import api_settings


class ModelCleanMixin:
    """Validate with the model's own `full_clean()`, so the API states the same rules as the admin.

    Field validators, `clean()`, unique fields and constraints all answer 400 with their messages
    under the field they concern (or `non_field_errors`).
    """

    def instance_for_clean(self, attrs: dict[str, Any]) -> models.Model:
        model = self.Meta.model  # type: ignore[attr-defined]
        # A copy: a failed validation must not leave half-applied changes on the object.
        instance = copy.copy(self.instance) if self.instance is not None else model()  # type: ignore[attr-defined]
        concrete = {f.name for f in model._meta.concrete_fields}
        for name, value in attrs.items():
            if name in concrete:
                setattr(instance, name, value)
        return instance

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)  # type: ignore[misc]
        instance = self.instance_for_clean(attrs)
        try:
            instance.full_clean()
        except DjangoValidationError as error:
            raise serializers.ValidationError(
                {
                    (api_settings.NON_FIELD_ERRORS_KEY if field == NON_FIELD_ERRORS else field): messages
                    for field, messages in error.message_dict.items()
                }
            ) from error
        return attrs

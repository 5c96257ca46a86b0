"""The API's body parsers: DRF's, plus the checks of `laborchestrator.inputs` on what they parsed.

DRF's JSON parser turns only ValueError into a 400: JSON nested 100,000 levels deep raises
RecursionError (a 500), and strings with NUL characters or lone surrogates pass through to fields
that do not refuse them and on to the database. Here every body is refused with a 400 naming the
problem, whatever view it is for.
"""

from __future__ import annotations

from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from laborchestrator.inputs import MAX_JSON_DEPTH, data_problem, form_problem


class JSONParser(parsers.JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as error:
            raise ParseError(
                f"JSON parse error - the data is nested more than {MAX_JSON_DEPTH} levels deep."
            ) from error
        if problem := data_problem(data):
            raise ParseError(f"JSON parse error - {problem}")
        return data


class FormParser(parsers.FormParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        data = super().parse(stream, media_type, parser_context)
        if problem := form_problem(data):
            raise ParseError(problem)
        return data


class MultiPartParser(parsers.MultiPartParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        result = super().parse(stream, media_type, parser_context)
        if problem := form_problem(result.data, result.files):
            raise ParseError(problem)
        return result

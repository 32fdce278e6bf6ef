"""Input fields and pagination every API view shares: money as a decimal string, moments from 1970 to 2999, JSON
types exactly as the schema states them, cursor pagination that answers a bad cursor with 400."""
import re
from datetime import UTC, datetime
from decimal import Decimal

from django.http import QueryDict
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, serializers
from rest_framework.pagination import CursorPagination


class ApiCursorPagination(CursorPagination):
    """Cursor pagination of the API's lists (ledgers, coupons): an unreadable `cursor` is a 400 field error on
    `cursor`, like any other bad input, not DRF's 404. `page_size` above the maximum is lowered to it."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def decode_cursor(self, request):
        try:
            cursor = super().decode_cursor(request)
        except exceptions.NotFound:
            cursor = False
        # Our lists are ordered by id: a position that is no integer would fail in the query (a 500).
        if cursor is False or (cursor is not None and cursor.position is not None and not _is_int(cursor.position)):
            raise serializers.ValidationError({self.cursor_query_param: [str(_("Invalid cursor."))]})
        return cursor

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not re.fullmatch(r"[0-9]+", raw) or int(raw) < 1:
            raise serializers.ValidationError({self.page_size_query_param: [str(_("Must be a positive integer."))]})
        return min(int(raw), self.max_page_size)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1}
                parameter["description"] = f"Results per page, default {self.page_size}; above {self.max_page_size}: " \
                    f"{self.max_page_size}."
            elif parameter["name"] == self.cursor_query_param:
                parameter["description"] = "The `next` or `previous` link's cursor; another value is 400."
        return parameters


def _is_int(value: str) -> bool:
    return re.fullmatch(r"-?[0-9]{1,19}", value) is not None


class DecimalStringField(serializers.DecimalField):
    """A money amount in a JSON body or query: a string of digits with at most `decimal_places` decimals ("12.50"),
    no sign, exponent, spaces or leading zeros, as the schema's `pattern` states (DRF's DecimalField also takes
    numbers and "1e3"). With `min_value` 0.01 the pattern also excludes zero."""

    default_error_messages = {"format": _('Send the amount as a decimal string such as "12.50".')}

    def __init__(self, *, max_digits, decimal_places, positive=False, **kwargs):
        integer_digits = max_digits - decimal_places
        fraction = f"(?:\\.[0-9]{{1,{decimal_places}}})?"
        if positive:
            small = "|".join(
                f"0\\.{'0' * n}[1-9]" + (f"[0-9]{{0,{decimal_places - n - 1}}}" if n < decimal_places - 1 else "")
                for n in range(decimal_places)
            )
            self.pattern = f"^(?:[1-9][0-9]{{0,{integer_digits - 1}}}{fraction}|{small})$"
            kwargs.setdefault("min_value", Decimal("0.1") ** decimal_places)
        else:
            self.pattern = f"^(?:0|[1-9][0-9]{{0,{integer_digits - 1}}}){fraction}$"
            kwargs.setdefault("min_value", Decimal(0))
        self.regex = re.compile(self.pattern.replace("$", "\\Z"))
        super().__init__(max_digits=max_digits, decimal_places=decimal_places, **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str) or not self.regex.match(data):
            self.fail("format")
        return super().to_internal_value(data)


class ApiDateTimeField(serializers.DateTimeField):
    """An ISO 8601 moment from 1970 to 2999. Earlier ones would be rendered back in local mean time offsets
    ("+08:05:43", no valid RFC 3339), and far-future ones can overflow when converted between time zones."""

    EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
    LATEST = datetime(3000, 1, 1, tzinfo=UTC)
    default_error_messages = {"range": _("Must be from 1970 to 2999.")}

    def to_internal_value(self, value):
        try:
            moment = super().to_internal_value(value)
        except (OverflowError, ValueError):
            self.fail("invalid", format="ISO 8601")
        if not moment_in_range(moment):
            self.fail("range")
        return moment


def moment_in_range(moment: datetime) -> bool:
    """Whether an aware datetime is one the API takes (1970 to 2999; see ApiDateTimeField)."""
    try:
        return ApiDateTimeField.EARLIEST <= moment < ApiDateTimeField.LATEST
    except OverflowError:
        return False


# JSON types each input field takes: DRF would also coerce "5" into 5, 1 into True and 5 into "5"; the API takes
# exactly the types its schema states.
_JSON_TYPES = (
    (serializers.BooleanField, (bool,), _("Must be true or false.")),
    (serializers.IntegerField, (int,), _("Must be an integer.")),
    (serializers.DecimalField, (str,), _('Must be a decimal string such as "12.50".')),
    (serializers.MultipleChoiceField, (list,), _("Must be a list.")),
    (serializers.ChoiceField, (str,), _("Must be a string.")),
    (serializers.CharField, (str,), _("Must be a string.")),
    (serializers.DateField, (str,), _("Must be a string.")),
    (serializers.DateTimeField, (str,), _("Must be a string.")),
)


def validate_json_types(serializer_class, data) -> None:
    """Refuse a JSON body whose fields have another JSON type than the schema states (400 with field errors)."""
    if not isinstance(data, dict):
        return  # DRF answers "expected a dictionary" itself
    fields = serializer_class().fields
    errors = {}
    for name, value in data.items():
        field = fields.get(name)
        if field is None or field.read_only or (value is None and field.allow_null):
            continue
        for family, types, message in _JSON_TYPES:
            if isinstance(field, family):
                if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
                    errors[name] = [str(message)]
                break
    if errors:
        raise serializers.ValidationError(errors)


def validated_input(serializer_class, data) -> dict:
    """The validated input of a JSON body or a query string (400 with field errors)."""
    if isinstance(data, QueryDict):
        # As a plain dict, so an empty value (`?limit=`) is refused like in JSON rather than taken for "absent".
        data = {key: data.get(key) for key in data}
    else:
        validate_json_types(serializer_class, data)
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)

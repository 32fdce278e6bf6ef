"""The one character set of the ids the storefront and imports give us: a member's `external_id`, an `order_id`, a
`refund_id` (reward codes are slugs, a subset).

An id is 1 to 64 characters: ASCII letters and digits, and `. _ ~ : @ -` inside; it begins with a letter or digit.
Every one of them is a URL path character that needs no percent-encoding (RFC 3986 unreserved, plus `:` and `@`),
so an id round-trips in `/api/v1/members/{external_id}/` whatever client builds the URL: no `/` that would split the
path, no `?`, `#` or `%` a client would read as query, fragment or escape, no space, no `.`/`..` that clients
collapse as dot segments, and no leading `-`, `@`, `+` or `=` a spreadsheet would take for a formula in an export.

Creating something with an id outside the set is refused: 400 in the API (the schema states the pattern), a form
error in the admin, a row error in the imports. Ids stored before the rule stay reachable: lookups (a path, an
order's customer_id, an import row of an existing member) do not check the set, and the API's per-member routes take
a `/` inside the id (`<stored_id:external_id>` in config/urls.py; an old id ending in "/transactions" and the like is
the one that cannot be told from a sub-resource).
"""
import re

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.utils.deconstruct import deconstructible
from django.utils.translation import gettext_lazy as _

IDENTIFIER_MAX_LENGTH = 64
IDENTIFIER_FIRST = "A-Za-z0-9"  # as regex class contents
IDENTIFIER_CHARACTERS = "A-Za-z0-9._~:@-"
# ECMA 262 and Python alike: the OpenAPI schema states it as it is.
IDENTIFIER_PATTERN = f"^[{IDENTIFIER_FIRST}][{IDENTIFIER_CHARACTERS}]{{0,{IDENTIFIER_MAX_LENGTH - 1}}}$"
IDENTIFIER_HELP = "1-64 characters: letters, digits and . _ ~ : @ - (beginning with a letter or digit)."


@deconstructible(path="members.identifiers.IdentifierValidator")
class IdentifierValidator(RegexValidator):
    """The character set as a validator (a RegexValidator, so drf-spectacular states its pattern in the schema).
    Matches the whole value: a trailing line break does not slip through."""

    regex = IDENTIFIER_PATTERN
    message = _("Use 1 to 64 letters, digits and . _ ~ : @ - (beginning with a letter or digit).")
    code = "invalid_identifier"

    def __call__(self, value):
        if not identifier_is_valid(value):
            raise ValidationError(self.message, code=self.code, params={"value": value})


_IDENTIFIER_RE = re.compile(IDENTIFIER_PATTERN)

validate_identifier = IdentifierValidator()


def identifier_is_valid(value) -> bool:
    return isinstance(value, str) and _IDENTIFIER_RE.fullmatch(value) is not None


class StoredIdConverter:
    """A URL path converter for an id as stored, whatever it holds: `/` (ids from before the character set) and line
    breaks too, which Django's `path` converter would not match, leaving the request to an HTML 404 instead of the
    API's JSON `member_not_found`/`order_not_found`."""

    regex = r"[\s\S]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value

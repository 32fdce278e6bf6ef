"""The one rule for phone numbers: E.164 ("+8613800138000"), read with the `phonenumbers` library.

Every way a phone comes in (member_register, so the API and the admin form; the member import; the order import's
staged rows) and every search by phone (the admin's search) normalise through `phone_normalise`, so one member is
found by "138 0013 8000", "+86 138-0013-8000" or "8613800138000". A number without a country code is read in the
region of settings.LOYALTY_PHONE_REGION (CN by default). Rows stored before this rule keep their phone as typed (no
data migration): they are rewritten when the profile is next saved.
"""
import re

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _


class InvalidPhone(ValueError):
    """The text is not a valid phone number (in the default region, when it has no country code)."""


def phone_normalise(raw: str | None, *, region: str | None = None) -> str:
    """The phone in E.164, or "" for a blank one. Raises InvalidPhone when it is not a valid number."""
    text = (raw or "").strip()
    if not text:
        return ""
    try:
        number = phonenumbers.parse(text, region or settings.LOYALTY_PHONE_REGION)
    except phonenumbers.NumberParseException:
        raise InvalidPhone(_("Enter a valid phone number.")) from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(_("Enter a valid phone number.")) from None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_validator(value: str) -> None:
    """A field validator (API serializers, forms): the value must be a valid phone number or blank."""
    try:
        phone_normalise(value)
    except InvalidPhone as error:
        raise ValidationError(str(error), code="invalid") from None


_PHONE_CHARACTERS = re.compile(r"^[0-9 +()\-.]{5,40}$")


def phone_search_spellings(query: str) -> list[str] | None:
    """The stored phones a search for `query` matches: its E.164 form, and for rows stored before the rule (as typed)
    the national number and the query as written. None when the query is not a valid phone number."""
    text = (query or "").strip()
    if not _PHONE_CHARACTERS.match(text):
        return None
    try:
        e164 = phone_normalise(text)
    except InvalidPhone:
        return None
    national = str(phonenumbers.parse(e164).national_number)
    return list(dict.fromkeys([e164, national, text]))

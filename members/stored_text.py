"""Texts written into the database (ledger notes, campaign events) are in the site's language (LANGUAGE_CODE),
whatever language the request that caused them speaks: a Chinese admin session or an API call with
`Accept-Language: zh-hans` must not store Chinese notes beside English ones. Pass a gettext_lazy message (so
makemessages extracts it) and its parameters."""
from django.conf import settings
from django.utils import translation


def stored_text(message, params: dict | None = None) -> str:
    with translation.override(settings.LANGUAGE_CODE):
        text = str(message)
        return text % params if params is not None else text

"""Rendering message templates that staff write in the admin, safely.

Staff write Django template syntax, but not all of it: the engine here has no loaders (no {% include %}, {% extends %})
and none of Django's built-in libraries, only the module's own `register`: variables, a short list of harmless
filters and `{% if %}`. {% load %} does not exist either, so nothing else can be pulled in. The context is a flat dict
of plain values (strings, numbers, dates), never model instances, so a variable cannot reach a method that changes
data. Bodies are plain text: nothing is HTML-escaped (emails go out as text/plain), and a missing variable renders
as "" (use `|default:"..."`). Templates render in the message's language, so `|date:"F"` gives localised month names.
"""
import functools

from django.contrib.humanize.templatetags import humanize
from django.template import Context, Engine, Library, Template, TemplateSyntaxError, defaultfilters, defaulttags
from django.utils import translation
from django.utils.translation import gettext as _

from .errors import InvalidTemplate

register = Library()

SAFE_FILTERS = (
    "default",
    "default_if_none",
    "date",
    "upper",
    "lower",
    "title",
    "capfirst",
    "floatformat",
    "yesno",
    "pluralize",
    "truncatechars",
)
for _name in SAFE_FILTERS:
    register.filters[_name] = defaultfilters.register.filters[_name]
register.filters["intcomma"] = humanize.register.filters["intcomma"]
register.tags["if"] = defaulttags.register.tags["if"]

# Longer templates are refused: a message is a few paragraphs at most.
MAX_TEMPLATE_CHARS = 20_000


class MessageEngine(Engine):
    default_builtins = []  # none of Django's tags and filters: only this module's `register`


@functools.cache
def message_engine() -> MessageEngine:
    return MessageEngine(loaders=[], builtins=[__name__], libraries={}, autoescape=False, string_if_invalid="")


def template_compile(source: str) -> Template:
    """Compile a template text, or raise InvalidTemplate saying what is wrong."""
    if len(source or "") > MAX_TEMPLATE_CHARS:
        raise InvalidTemplate(_("The template is longer than %(limit)s characters.") % {"limit": MAX_TEMPLATE_CHARS})
    try:
        return Template(source or "", engine=message_engine())
    except TemplateSyntaxError as exc:
        raise InvalidTemplate(str(exc)) from exc


def template_render(template: Template | str, context: dict, *, language: str) -> str:
    """Render a compiled template (or a text) with a flat context of plain values, in `language`."""
    if isinstance(template, str):
        template = template_compile(template)
    with translation.override(language):
        try:
            return template.render(Context(context, autoescape=False)).strip()
        except Exception as exc:  # a filter given a value it cannot take: the template's fault, reported as such
            raise InvalidTemplate(str(exc)) from exc

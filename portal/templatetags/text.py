"""Template filters for sentences: {{ provider_name|end_sentence }} never prints "Inc..""."""

from django import template

from portal.kernel import end_sentence as _end_sentence

register = template.Library()


@register.filter
def end_sentence(value):
    return _end_sentence(value)

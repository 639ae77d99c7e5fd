"""Admin pages that save through services: a service's refusal (ApplicationError) shows on the form, never a 500.

A ModelAdmin using `ServiceWriteAdmin` calls its services in `save_model` (the form validates input only).
When a service refuses, what the first attempt wrote is rolled back and the page is shown again with the
staff's input and the service's message as a form error, as for any invalid form.
"""

from django.contrib import admin
from django.db import router, transaction

from portal.kernel import ApplicationError


def refusal_messages(exc: ApplicationError) -> list[str]:
    """The messages of a refusal: each error of a document, or the message."""
    errors = exc.extra.get("errors") if isinstance(exc.extra, dict) else None
    return [str(error) for error in errors] if errors else [exc.message]


class ServiceWriteAdmin(admin.ModelAdmin):
    def _changeform_view(self, request, object_id, form_url, extra_context):
        if request.method != "POST":
            return super()._changeform_view(request, object_id, form_url, extra_context)
        try:
            with transaction.atomic(using=router.db_for_write(self.model)):
                return super()._changeform_view(request, object_id, form_url, extra_context)
        except ApplicationError as exc:
            request.service_refusal = refusal_messages(exc)
        # Again, with the refusal as the form's error: the form is invalid, so nothing is saved this time.
        return super()._changeform_view(request, object_id, form_url, extra_context)

    def get_form(self, request, obj=None, **kwargs):
        form_class = super().get_form(request, obj, **kwargs)
        refusal = getattr(request, "service_refusal", None)
        if not refusal:
            return form_class

        def _post_clean(form):
            form_class._post_clean(form)
            for message in refusal:
                form.add_error(None, message)

        return type(form_class.__name__, (form_class,), {"_post_clean": _post_clean})

    @staticmethod
    def saved_as(obj, saved) -> None:
        """Make the admin's unsaved `obj` the row a service saved, for the admin's log and redirect."""
        obj.pk = saved.pk
        obj.refresh_from_db()
        obj._state.adding = False


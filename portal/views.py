"""The portal's own pages: the home page, a health check, and the plan format document for staff."""

from django.conf import settings
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render


def home(request):
    """Signed-in tenant users go to their tenant area; everyone else sees the portal's front page."""
    user = request.user
    if user.is_authenticated and not user.is_staff and getattr(user, "tenant_user", None) is not None:
        return redirect("/tenant/")
    return render(request, "portal/home.html")


def healthz(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


def plans_doc(request):
    """docs/plans.md as text, so the admin's help texts can link to the plan format (staff only, see urls)."""
    text = (settings.BASE_DIR / "docs/plans.md").read_text(encoding="utf-8")
    return HttpResponse(text, content_type="text/plain; charset=utf-8")

"""The portal's own pages: the home page and a health check."""

from django.db import connection
from django.http import JsonResponse
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

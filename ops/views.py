from django.http import JsonResponse
from django.views.decorators.http import require_GET


@require_GET
def health_live(request):
    """Liveness: the process answers. No dependency is consulted."""
    return JsonResponse({"status": "ok"})

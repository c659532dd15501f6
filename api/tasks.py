from celery import shared_task


@shared_task(ignore_result=True)
def api_audit_prune() -> int:
    from api.services import api_audit_prune as prune

    return prune()

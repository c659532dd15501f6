from celery import shared_task


@shared_task(ignore_result=True)
def notification_test_send(user_id: int) -> None:
    """The "Send me a test" button's work, off the web request."""
    from django.contrib.auth import get_user_model

    from preferences.notify import notification_send_test

    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is not None:
        notification_send_test(user=user)

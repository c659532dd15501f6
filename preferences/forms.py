from django import forms

from preferences.models import NotificationSettings
from preferences.timezones import time_zone_choices


class NotificationSettingsForm(forms.ModelForm):
    class Meta:
        model = NotificationSettings
        fields = ["needs_you", "recovered", "expiring", "broker_outage", "email"]
        help_texts = {
            "needs_you": "A connection stopped working and only you can fix it.",
            "recovered": "A connection that needed you works again.",
            "expiring": "A broker's sign-in deadline is near (Schwab signs you out after 7 days).",
            "broker_outage": "A broker is failing for everyone, and when that is over.",
            "email": "To your sign-in address. Your channels below get the same notifications.",
        }


class TimeZoneForm(forms.Form):
    time_zone = forms.ChoiceField(label="Time zone", choices=())

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["time_zone"].choices = [(name, name.replace("_", " ")) for name in time_zone_choices()]


class ChannelForm(forms.Form):
    name = forms.CharField(label="Name", max_length=80, required=False, help_text="For you, e.g. “Phone (ntfy)”.")
    url = forms.CharField(
        label="Apprise URL",
        max_length=2000,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false", "placeholder": "ntfys://ntfy.sh/my-topic"}),
        help_text="An Apprise URL for ntfy (ntfys://), Slack (slack://), Discord (discord://), Telegram (tgram://), "
        "Pushover (pover://), Teams workflows (workflows://) or a JSON/form webhook over https (jsons://, forms://). "
        "It is stored encrypted and never shown again.",
    )

"""The UI's forms: login, and the match debug page's question."""

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm

from matching.lookup import signal_parse, signal_type_resolve
from omm_project.core.login_throttle import ThrottledAdminAuthenticationForm
from omm_project.lib.errors import InvalidInput

PDQ_MAX_DISTANCE = 256  # a PDQ hash has 256 bits


class LoginForm(ThrottledAdminAuthenticationForm):
    """
    The admin's throttled login (omm_project.core.login_throttle: failures counted per username
    and address), for any active account: what a user may open is decided per page by its group
    (ui.groups), not by the staff flag.
    """

    error_messages = {
        **ThrottledAdminAuthenticationForm.error_messages,
        "invalid_login": AuthenticationForm.error_messages["invalid_login"],
    }

    def confirm_login_allowed(self, user) -> None:
        AuthenticationForm.confirm_login_allowed(self, user)


class MatchDebugForm(forms.Form):
    """A PDQ hash or a photo (exactly one), and how far to search."""

    hash = forms.CharField(
        label="PDQ hash",
        required=False,
        max_length=200,
        widget=forms.TextInput(attrs={"size": 70, "autocomplete": "off", "spellcheck": "false"}),
    )
    photo = forms.FileField(label="or a photo", required=False)
    max_distance = forms.IntegerField(label="Max distance", min_value=0, max_value=PDQ_MAX_DISTANCE)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["max_distance"].initial = settings.OMM_PDQ_MATCH_THRESHOLD
        self.fields["max_distance"].help_text = (
            f"0-{PDQ_MAX_DISTANCE}; this deployment matches at {settings.OMM_PDQ_MATCH_THRESHOLD} "
            "unless a bank sets its own threshold"
        )

    def clean_hash(self) -> str:
        value = self.cleaned_data["hash"].strip().lower()
        if not value:
            return ""
        try:  # the rule every /m lookup applies to a PDQ signal
            return signal_parse(signal_type_resolve("pdq"), value)
        except InvalidInput as exc:
            raise forms.ValidationError(
                f"Not a PDQ hash: 64 hexadecimal characters expected ({exc.message})", code="invalid"
            ) from None

    def clean(self) -> dict:
        cleaned = super().clean()
        if "hash" in cleaned and "photo" in cleaned:
            given = [name for name in ("hash", "photo") if cleaned[name]]
            if len(given) != 1:
                raise forms.ValidationError("Paste a PDQ hash or choose a photo (one of the two).", code="one_input")
        return cleaned

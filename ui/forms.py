"""The UI's forms: login, the match debug page's question, the queue's filters, a case's decisions."""

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm

from banks.services import NOTE_MAX_LENGTH
from matching.lookup import signal_parse, signal_type_resolve
from omm_project.core.login_throttle import ThrottledAdminAuthenticationForm
from omm_project.lib.errors import InvalidInput
from reviews.choices import CaseState, CaseVerdict
from reviews.models import CaseMatch

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


# --- Queue and case ---------------------------------------------------------------------------

# The queue shows the cases still to decide unless a state is chosen.
QUEUE_STATES = [("", "Open and in review"), *CaseState.choices]


class QueueFilterForm(forms.Form):
    """The queue's filters (a GET form); an empty field is no filter."""

    state = forms.ChoiceField(choices=QUEUE_STATES, required=False)
    bank = forms.CharField(required=False, max_length=255)
    label = forms.CharField(required=False, max_length=255)
    assignee = forms.CharField(required=False, max_length=get_user_model()._meta.get_field("username").max_length)
    min_priority = forms.IntegerField(required=False, min_value=0, label="Priority at least")

    def filters(self) -> dict[str, str]:
        """The filters given, for reviews.selectors.CaseFilters."""
        return {name: value for name, value in self.cleaned_data.items() if value}


class CaseVerdictForm(forms.Form):
    """
    A verdict per match (one radio group each, `match-<id>`, shown for the undecided ones; a match
    left blank keeps no verdict) or, with a whole-case button (`verdict`), one verdict for every
    undecided match.
    """

    verdict = forms.ChoiceField(choices=CaseVerdict.choices, required=False)
    note = forms.CharField(required=False, max_length=NOTE_MAX_LENGTH)

    def __init__(self, *args, matches: list[CaseMatch], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for match in matches:
            self.fields[f"match-{match.pk}"] = forms.ChoiceField(
                choices=CaseVerdict.choices, required=False, widget=forms.RadioSelect, label=f"match {match.pk}"
            )

    def matches(self) -> dict[int, str]:
        """{case match id: verdict} of the radios chosen."""
        return {
            int(name.removeprefix("match-")): value
            for name, value in self.cleaned_data.items()
            if name.startswith("match-") and value
        }

    def clean(self) -> dict:
        cleaned = super().clean()
        if not self.errors and not cleaned.get("verdict") and not self.matches():
            raise forms.ValidationError("Choose a verdict for at least one match.", code="no_verdict")
        return cleaned


class CaseAssignForm(forms.Form):
    """Assign the case to the user who sends it, or unassign it."""

    assign = forms.ChoiceField(choices=[("me", "Assign to me"), ("nobody", "Unassign")])

"""omm_project.lib.db: unique violations become 409s, other integrity errors do not."""

import pytest
from django.db import IntegrityError

from banks.models import Bank, BankContent
from omm_project.lib.db import unique_or_conflict
from omm_project.lib.errors import Conflict

pytestmark = pytest.mark.django_db


def test_unique_violation_is_a_conflict_and_the_transaction_goes_on():
    Bank.objects.create(name="TAKEN")
    with pytest.raises(Conflict, match="taken"):
        with unique_or_conflict("taken"):
            Bank.objects.create(name="TAKEN")
    assert Bank.objects.count() == 1  # the savepoint kept the outer transaction usable


def test_other_integrity_errors_are_not_conflicts():
    with pytest.raises(IntegrityError):
        with unique_or_conflict("taken"):
            Bank.objects.create(name="lower case breaks the name check")
    with pytest.raises(IntegrityError):
        with unique_or_conflict("taken"):
            BankContent.objects.create(bank_id=123456789, disable_until_ts=-1)

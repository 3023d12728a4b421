"""Webhook secrets are sealed at rest: seal every stored clear secret, then drop the clear column."""

from django.db import migrations, models

from omm_project.lib import sealing

# reviews.services.webhooks.SECRET_CONTEXT, fixed here as it was when these rows were sealed.
CONTEXT = "reviews.webhook_secret"


def seal_secrets(apps, schema_editor):
    WebhookEndpoint = apps.get_model("reviews", "WebhookEndpoint")
    for endpoint in WebhookEndpoint.objects.only("pk", "secret").iterator():
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
            secret_sealed=sealing.seal(endpoint.secret, context=CONTEXT)
        )


def unseal_secrets(apps, schema_editor):
    WebhookEndpoint = apps.get_model("reviews", "WebhookEndpoint")
    for endpoint in WebhookEndpoint.objects.only("pk", "secret_sealed").iterator():
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
            secret=sealing.unseal(endpoint.secret_sealed, context=CONTEXT)
        )


class Migration(migrations.Migration):
    dependencies = [
        ("reviews", "0002_retroaction_batch"),
    ]

    operations = [
        migrations.AddField(
            model_name="webhookendpoint",
            name="secret_sealed",
            field=models.CharField(default="", editable=False, max_length=400),
            preserve_default=False,
        ),
        migrations.RunPython(seal_secrets, unseal_secrets),
        migrations.RemoveField(model_name="webhookendpoint", name="secret"),
    ]

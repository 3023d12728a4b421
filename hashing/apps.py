import threading

from django.apps import AppConfig
from django.conf import settings

from omm_project.lib.processes import is_web_server_process


class HashingConfig(AppConfig):
    name = "hashing"
    verbose_name = "Hashing"

    def ready(self) -> None:
        # Load (or compile, on a machine's first run) the numba PDQ kernels in the background as
        # a hasher starts, so the first upload doesn't wait for it. Not in commands or workers.
        if "hasher" in settings.OMM_ROLES and is_web_server_process():
            from hashing import core  # numba and Pillow: loaded only by a hasher's web process

            threading.Thread(target=core.warm_up, name="omm-hashing-warm-up", daemon=True).start()

import threading

from django.apps import AppConfig


class HashingConfig(AppConfig):
    name = "hashing"
    verbose_name = "Hashing"

    def ready(self) -> None:
        from django.conf import settings

        from omm_project.lib.processes import is_web_server_process

        # Load (or compile, on a machine's first run) the numba PDQ kernels in the background as
        # a hasher starts, so the first upload doesn't wait for it. Not in commands or workers.
        if "hasher" in getattr(settings, "OMM_ROLES", ()) and is_web_server_process():
            from hashing import core

            threading.Thread(target=core.warm_up, name="omm-hashing-warm-up", daemon=True).start()

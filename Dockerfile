# One image for every role: OMM_ROLES picks hasher / matcher / curator; the command picks
# web (gunicorn), worker or beat. CI runs these same steps by hand (no Docker engine there).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NUMBA_CACHE_DIR=/app/var/numba-cache

# gcc and headers: pdqhash builds from source on some platforms.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc g++ libc6-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements/ requirements/
RUN pip install -r requirements/base.txt

COPY . .
# The warm-up compiles the PDQ kernels into NUMBA_CACHE_DIR now, not in each new container.
RUN DJANGO_DEBUG=true python manage.py collectstatic --noinput \
    && python -c "from hashing import core; core.warm_up()" \
    && useradd --system --uid 10001 --home-dir /app omm \
    && mkdir -p /app/var \
    && chown -R omm /app/var

USER omm
EXPOSE 8000
ENTRYPOINT ["scripts/docker-entrypoint.sh"]
CMD ["web"]

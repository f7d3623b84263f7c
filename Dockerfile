# The colima-ref server image, built by compose.yaml (`docker compose up --build`).
# Two stages: Node fetches the pinned Swagger UI / ReDoc bundles for the offline /docs and /redoc,
# then a slim Python image installs the locked runtime dependencies and the package, nothing else.

FROM node:20-slim AS docs-assets
WORKDIR /src
COPY package.json package-lock.json ./
COPY scripts/fetch-docs-assets.sh scripts/
RUN bash scripts/fetch-docs-assets.sh /assets

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PATH=/app/.venv/bin:$PATH
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app

# Dependencies first, in their own layer, so a source change does not reinstall them.
# The devstack group (OpenBao CLI, SecantusDB) is for local runs only.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-group devstack --no-install-project

COPY src ./src
COPY --from=docs-assets /assets ./src/colima_ref/http/static/vendor
RUN uv sync --frozen --no-dev --no-group devstack --no-editable \
    && useradd --system --uid 10001 --no-create-home colima

USER colima
EXPOSE 8000
CMD ["colima-ref", "serve", "--host", "0.0.0.0", "--port", "8000"]

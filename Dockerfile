# syntax=docker/dockerfile:1
# One image with both executables; docker-compose.yml picks the command for each service.

# ---- build ----
FROM swift:6.3-noble AS build
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libsqlite3-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /build
# Resolve dependencies first so they are cached while only sources change.
COPY Package.swift ./
RUN swift package resolve
COPY Sources ./Sources
COPY Tests ./Tests
# The package also names the benchmark's reference server; it is built, never shipped.
COPY bench/bare ./bench/bare
# The same release build bench/run runs on the development machines.
# Each executable reads its OpenAPI document from the resource bundle beside it, and Swagger UI (for /docs) from
# Shared's.
RUN swift build -c release --static-swift-stdlib \
    && bin="$(swift build -c release --static-swift-stdlib --show-bin-path)" \
    && mkdir /staging \
    && cp "$bin/products-service" "$bin/database-service" /staging/ \
    && cp -R "$bin/products-platform_ProductsService.resources" "$bin/products-platform_DatabaseService.resources" \
        "$bin/products-platform_Shared.resources" /staging/

# ---- run ----
FROM ubuntu:noble
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libsqlite3-0 ca-certificates tzdata curl \
    && rm -rf /var/lib/apt/lists/*
# An unprivileged user owning /data, so named volumes mounted there start writable.
RUN useradd --system --user-group --create-home --home-dir /app app \
    && mkdir -p /data \
    && chown app:app /data
COPY --from=build /staging/ /usr/local/bin/
USER app:app
WORKDIR /app
ENV HOST=0.0.0.0
EXPOSE 8080 8081
CMD ["products-service"]

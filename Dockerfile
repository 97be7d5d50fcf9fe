# vmrules in a slim image, running as a non-root user.
#   docker build -t vmrules .
#   docker run --rm -v "$PWD/rules:/work/rules:ro" -v vmrules-data:/work/exports -e VM_TOKEN vmrules \
#       apply rules/ --incremental --output-dir exports
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY vmrules ./vmrules
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --create-home --home-dir /work vmrules
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
WORKDIR /work
ENTRYPOINT ["vmrules"]
CMD ["apply", "rules/", "--incremental", "--output-dir", "exports"]

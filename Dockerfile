# The GraphQL API image used by docker-compose.yml (service `api`).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY core ./core
COPY analysis ./analysis
COPY graph ./graph
COPY cgraph ./cgraph
COPY loaders ./loaders
COPY api ./api
RUN pip install --no-cache-dir .
EXPOSE 8000
CMD ["cgraph", "serve", "--host", "0.0.0.0", "--port", "8000"]

FROM python:3.11-slim
WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir . && useradd --create-home digest && mkdir -p /data && chown digest /data
USER digest
ENV NEWSLETTER_VAR_DIR=/data
CMD ["newsletter", "serve"]

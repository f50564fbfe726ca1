# mentorbot: a small image with only the installed wheels, run as an unprivileged user.
#   docker build -t mentorbot .
#   docker run --env-file .env -p 3000:3000 -v mentorbot-data:/home/mentorbot/data mentorbot

# Build stage: wheels for mentorbot and everything it needs (binary wheels; no compiler).
FROM python:3.11-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir --upgrade pip
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY adapters ./adapters
COPY scheduler ./scheduler
COPY mentorbot ./mentorbot
COPY content ./content
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Final stage: no build tools, no sources; the course ships inside the wheel.
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin mentorbot
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-compile /wheels/*.whl && rm -rf /wheels
USER mentorbot
WORKDIR /home/mentorbot
RUN mkdir -p /home/mentorbot/data
ENV MENTORBOT_DATABASE_URL=sqlite:////home/mentorbot/data/mentorbot.db \
    MENTORBOT_HTTP=on \
    PORT=3000 \
    PYTHONUNBUFFERED=1
VOLUME ["/home/mentorbot/data"]
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '3000') + '/healthz', timeout=4)"]
ENTRYPOINT ["mentorbot"]
CMD ["run"]

# Build stage: make a wheel of mentorbot and its dependencies.
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

# Final stage: only the installed wheels, run as an unprivileged user.
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 mentorbot
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER mentorbot
WORKDIR /home/mentorbot
ENV MENTORBOT_DATABASE_URL=sqlite:////home/mentorbot/data/mentorbot.db \
    PYTHONUNBUFFERED=1
RUN mkdir -p /home/mentorbot/data
VOLUME ["/home/mentorbot/data"]
EXPOSE 3000
ENTRYPOINT ["mentorbot"]
CMD ["run"]

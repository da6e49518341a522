"""Running the production topology (nginx → uWSGI/gunicorn → Flask, Redis) without containers."""

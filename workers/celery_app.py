"""For `celery -A workers.celery_app worker|flower|inspect ...`: the app from the environment's settings.

Building the app opens no connection; `reasongen worker` is the usual way to start a worker.
"""

from reasongen.settings import load_settings
from workers.app import worker_app

app = worker_app(load_settings())

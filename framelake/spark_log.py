"""Where Spark's own log goes when the ``framelake`` command starts the JVM itself.

Spark's JVM logs to its stderr, and so do the Python workers it starts (through the JVM).
What it says there is for whoever debugs Spark: warnings about windows that are global on
purpose, the machine's loopback address, a native library it does without, a worker that
wrote to a socket the JVM had closed. On the console it would bury framelake's progress and
summary. So the JVM starts with the log file as its stderr: ``<lake>/logs/<run_id>/spark.log``,
or for a lake on S3 a local folder, ``<temp>/framelake-logs/<run_id>/``; with ``--debug`` it
keeps the console. Either way log4j reads ``LOG4J2_PROPERTIES``, written beside the log (the
same text as ``conf/log4j2.properties``, for ``spark-submit --driver-java-options``).
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Iterator

from framelake.storage import is_s3

LOG4J2_PROPERTIES = """\
# Spark's driver log as framelake runs it: warnings and errors, on the JVM's stderr (the
# framelake command points that at <lake>/logs/<run_id>/spark.log). For spark-submit:
#   --driver-java-options "-Dlog4j2.configurationFile=file:conf/log4j2.properties"
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
# The shards stage numbers buckets and shards by windows without a partition, on purpose:
# one row a bucket or a shard.
logger.window.name = org.apache.spark.sql.execution.window.WindowExec
logger.window.level = error
"""
DRIVER_OPTIONS_KEY = "spark.driver.defaultJavaOptions"


@dataclass(frozen=True)
class SparkLog:
    """Where a session the ``framelake`` command starts logs: ``file``, or the console."""

    folder: str
    console: bool = False

    @classmethod
    def for_run(cls, lake_root: str, run_id: str, console: bool = False) -> SparkLog:
        folder = (os.path.join(tempfile.gettempdir(), "framelake-logs", run_id) if is_s3(lake_root)
                  else os.path.join(lake_root, "logs", run_id))
        return cls(folder, console)

    @property
    def file(self) -> str:
        return os.path.join(self.folder, "spark.log")

    @property
    def where(self) -> str:
        """Where Spark's log is, for the summary."""
        return "stderr (--debug)" if self.console else self.file

    def driver_options(self, conf: dict[str, str]) -> dict[str, str]:
        """``conf`` (the session's defaults) with the driver JVM option that points log4j at
        ``LOG4J2_PROPERTIES``, written into the folder, after the JVM options ``conf`` has."""
        settings = os.path.join(self.folder, "log4j2.properties")
        os.makedirs(self.folder, exist_ok=True)
        with open(settings, "w", encoding="utf-8") as out:
            out.write(LOG4J2_PROPERTIES)
        options = " ".join(filter(None, [conf.get(DRIVER_OPTIONS_KEY), f"-Dlog4j2.configurationFile=file:{settings}"]))
        return {**conf, DRIVER_OPTIONS_KEY: options}

    @contextlib.contextmanager
    def jvm_stderr(self) -> Iterator[None]:
        """Processes started in the block (the JVM of the first session, which starts the
        Python workers) get the log file as their stderr; this process keeps its own."""
        if self.console:
            yield
            return
        os.makedirs(self.folder, exist_ok=True)
        sys.stderr.flush()
        saved = os.dup(2)
        log = os.open(self.file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            os.dup2(log, 2)
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            os.close(log)

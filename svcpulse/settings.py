"""Validated settings, from the environment (SVCPULSE_*) or a .env file; CLI flags override them."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SVCPULSE_", env_file=".env", extra="ignore")

    kafka_bootstrap: str = Field("127.0.0.1:19092", description="Kafka bootstrap servers, host:port[,...]")
    store_url: str = Field("clickhouse://127.0.0.1:19000/svcpulse",
                           description="clickhouse://host:port/db or chdb:///path/db")
    group_id: str = Field("svcpulse-loader", description="Kafka consumer group of the loaders")
    batch_rows: int = Field(100_000, ge=1, description="flush a batch at this many rows")
    batch_age_s: float = Field(1.0, gt=0, description="flush a batch at this age (seconds)")
    partitions: int = Field(4, ge=1, description="partitions of topics the loader creates")
    api_host: str = Field("127.0.0.1", description="API listen address")
    api_port: int = Field(8000, ge=1, le=65535, description="API listen port")
    retention_days_raw: int = Field(7, ge=1, description="days kept in raw tables")
    retention_days_rollup: int = Field(90, ge=1, description="days kept in per-minute rollups")
    retention_days_load: int = Field(30, ge=1, description="days kept in instance_load")

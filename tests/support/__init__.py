"""What the tests share: factories that make things through the services, the API steps a
client takes, the pipeline run in this process or on worker processes, and the servers,
faults and measurements tests stand up around the service."""

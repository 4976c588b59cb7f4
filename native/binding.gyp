{
  "targets": [
    {
      "target_name": "aegis_native",
      "sources": ["aegis_native.c"],
      "cflags": ["-O2", "-Wall"]
    }
  ]
}

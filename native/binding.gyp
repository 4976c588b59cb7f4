{
  "targets": [
    {
      "target_name": "aegis_native",
      "sources": ["aegis_native.c"],
      "cflags": ["-O2", "-Wall"]
    },
    {
      "target_name": "aegis_fuse",
      "sources": ["aegis_fuse.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "<!@(pkg-config --cflags fuse3)"],
      "libraries": ["<!@(pkg-config --libs fuse3)"]
    }
  ]
}

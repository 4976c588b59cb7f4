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
      "include_dirs": ["<!(node -p \"require('fuse-shared-library').include\")"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-l:libfuse.so.2", "-lpthread"]
    }
  ]
}

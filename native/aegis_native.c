// What Node does not offer, or not fast enough:
//   utimens(path, atimeNs, mtimeNs, followSymlinks)  nanosecond times (utimensat), for exact restores
//   mknod(path, mode, dev)                            FIFOs and device nodes
//   fastcdcCut(...)                                   the chunker's inner loop (5-10x the JS loop)
//   mallocTrim()                                      give freed heap memory back to the system
//   setMmapThreshold(bytes)                           large blocks in their own mappings (mallopt)
//   gcmSealInto(...), gcmOpenInPlace(...)             AES-256-GCM without an output buffer per call
//                                                     (Node's Cipher allocates one per update)
//   scanDir(path, [dev, ino])                         a directory's entries with their lstat, in one call
//   restoreWholeFile(...)                             create, write and finish a restored file under its
//                                                     final name in one call (seven fs calls from JavaScript before)
//   restoreDirDone()                                  forget the directory restoreWholeFile kept open
//   willNeed(fd, offset, length)                      start reading a file range into the page cache
//   copyBytes(source, target, targetStart,            Buffer.copy at memmove speed (V8 moves bytes of
//             sourceStart, sourceEnd)                 shared memory one word at a time, ~3x slower)
//   readCached(fd, bytes, offset)                     pread that never waits for the disk (RWF_NOWAIT)
//   prefault(bytes)                                   fault in a new buffer's pages in one call
//   discard(bytes)                                    hand a freed range's whole pages back (MADV_DONTNEED)
//   backupOpen(path, bytes, offset, stat, [dev, ino]) open, fstat and first read of a file to back up
//   backupStat(fd, stat, close)                       fstat again (and close) after reading it
//   closeFd(fd)                                       close a descriptor backupOpen opened
//   prefetchFiles(paths)                              start reading files ahead of a worker
//   readXattrs(path)                                  a file's extended attributes, packed (no follow)
//   setXattrs(fd | path, packed, follow)              set extended attributes from the packed form
// Paths are Buffers so names that are not UTF-8 pass through untouched.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <node_api.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

static char *path_arg(napi_env env, napi_value v) {
  void *data;
  size_t len;
  if (napi_get_buffer_info(env, v, &data, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "path must be a Buffer");
    return NULL;
  }
  char *p = malloc(len + 1);
  memcpy(p, data, len);
  p[len] = 0;
  if (strlen(p) != len) {
    free(p);
    napi_throw_type_error(env, NULL, "path contains a NUL byte");
    return NULL;
  }
  return p;
}

static void throw_errno(napi_env env, int err, const char *syscall) {
  napi_value msg, code, error, errnum, sc;
  char text[256];
  snprintf(text, sizeof text, "%s: %s", syscall, strerror(err));
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
  const char *name = err == ENOENT ? "ENOENT" : err == EPERM ? "EPERM" : err == EACCES ? "EACCES" : err == EEXIST ? "EEXIST" : "EIO";
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, msg, &error);
  napi_create_int32(env, -err, &errnum);
  napi_set_named_property(env, error, "errno", errnum);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &sc);
  napi_set_named_property(env, error, "syscall", sc);
  napi_throw(env, error);
}

static int ns_arg(napi_env env, napi_value v, struct timespec *ts) {
  int64_t ns;
  bool lossless;
  if (napi_get_value_bigint_int64(env, v, &ns, &lossless) != napi_ok) {
    napi_throw_type_error(env, NULL, "times must be BigInt nanoseconds");
    return 0;
  }
  int64_t sec = ns / 1000000000;
  int64_t rem = ns % 1000000000;
  if (rem < 0) {
    rem += 1000000000;
    sec -= 1;
  }
  ts->tv_sec = (time_t)sec;
  ts->tv_nsec = (long)rem;
  return 1;
}

static bool uint_arg(napi_env env, napi_value v, size_t *out, const char *what);

// Fetch exactly `n` arguments into argv; on too few, throw a TypeError showing `usage`.
static bool get_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv, const char *usage) {
  size_t argc = n;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < n) {
    napi_throw_type_error(env, NULL, usage);
    return false;
  }
  return true;
}

static napi_value utimens(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!get_args(env, info, 4, argv, "utimens(path, atimeNs, mtimeNs, follow)")) return NULL;
  struct timespec ts[2];
  if (!ns_arg(env, argv[1], &ts[0]) || !ns_arg(env, argv[2], &ts[1])) return NULL;
  bool follow;
  napi_get_value_bool(env, argv[3], &follow);
  char *p = path_arg(env, argv[0]);
  if (!p) return NULL;
  int rc = utimensat(AT_FDCWD, p, ts, follow ? 0 : AT_SYMLINK_NOFOLLOW);
  int err = errno;
  free(p);
  if (rc != 0) throw_errno(env, err, "utimensat");
  return NULL;
}

static bool fd_arg(napi_env env, napi_value v, int32_t *fd);

// futimens(fd, atimeNs, mtimeNs): a restored directory's times, through the
// descriptor the restore reached it by (src/workers/target-dirs.ts).
static napi_value futimens_fn(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv, "futimens(fd, atimeNs, mtimeNs)")) return NULL;
  int32_t fd;
  if (!fd_arg(env, argv[0], &fd)) return NULL;
  struct timespec ts[2];
  if (!ns_arg(env, argv[1], &ts[0]) || !ns_arg(env, argv[2], &ts[1])) return NULL;
  if (futimens(fd, ts) != 0) throw_errno(env, errno, "futimens");
  return NULL;
}

static napi_value do_mknod(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv, "mknod(path, mode, dev)")) return NULL;
  uint32_t mode;
  int64_t dev;
  bool lossless;
  napi_get_value_uint32(env, argv[1], &mode);
  if (napi_get_value_bigint_int64(env, argv[2], &dev, &lossless) != napi_ok) {
    napi_throw_type_error(env, NULL, "dev must be a BigInt");
    return NULL;
  }
  char *p = path_arg(env, argv[0]);
  if (!p) return NULL;
  int rc = mknod(p, (mode_t)mode, (dev_t)dev);
  int err = errno;
  free(p);
  if (rc != 0) throw_errno(env, err, "mknod");
  return NULL;
}

// Where the chunk that starts at `start` ends (its length): the first position
// past `min` whose gear hash has no bit of the mask set (the strict mask up to
// `avg`, the loose one after), else `max` or the end of the data. A function of
// its own because gcc unrolls its loops here; written inline in fastcdc_cut,
// with the result carried to a label, they ran one byte a step (256 MiB of
// random data: 42 ms this way, 70 ms that way).
static int64_t cut_point(const uint8_t *b, int64_t start, int64_t end, const uint32_t *gear, int64_t min, int64_t avg, int64_t max, uint32_t ms, uint32_t ml) {
  int64_t n = end - start;
  if (n <= min) return n;
  if (n > max) n = max;
  const int64_t normal_end = start + (avg < n ? avg : n), stop = start + n;
  uint32_t h = 0;
  int64_t i = start + min;
  for (; i < normal_end; i++) {
    h = (h << 1) + gear[b[i]];
    if ((h & ms) == 0) return i - start + 1;
  }
  for (; i < stop; i++) {
    h = (h << 1) + gear[b[i]];
    if ((h & ml) == 0) return i - start + 1;
  }
  return n;
}

// fastcdcCut(buf, start, end, gear(Int32Array[256]), min, avg, max, maskStrict, maskLoose)
// The same cut-point rule as src/chunker/fastcdc.ts, byte for byte (docs/FORMAT.md §12).
static napi_value fastcdc_cut(napi_env env, napi_callback_info info) {
  napi_value argv[9];
  if (!get_args(env, info, 9, argv, "fastcdcCut(buf, start, end, gear, min, avg, max, maskStrict, maskLoose)")) return NULL;
  void *data;
  size_t len;
  if (napi_get_buffer_info(env, argv[0], &data, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "buf must be a Buffer");
    return NULL;
  }
  napi_typedarray_type gtype;
  size_t glen;
  void *gdata;
  if (napi_get_typedarray_info(env, argv[3], &gtype, &glen, &gdata, NULL, NULL) != napi_ok || gtype != napi_int32_array || glen != 256) {
    napi_throw_type_error(env, NULL, "gear must be an Int32Array of 256 entries");
    return NULL;
  }
  int64_t start, end, min, avg, max;
  int32_t ms, ml;
  napi_get_value_int64(env, argv[1], &start);
  napi_get_value_int64(env, argv[2], &end);
  napi_get_value_int64(env, argv[4], &min);
  napi_get_value_int64(env, argv[5], &avg);
  napi_get_value_int64(env, argv[6], &max);
  napi_get_value_int32(env, argv[7], &ms);
  napi_get_value_int32(env, argv[8], &ml);
  if (start < 0 || end < start || (size_t)end > len) {
    napi_throw_range_error(env, NULL, "range outside the buffer");
    return NULL;
  }
  int64_t result = cut_point((const uint8_t *)data, start, end, (const uint32_t *)gdata, min, avg, max, (uint32_t)ms, (uint32_t)ml);
  napi_value out;
  napi_create_int64(env, result, &out);
  return out;
}

// The mount's chunk cache frees and allocates blobs of every size on the main
// thread; glibc keeps the freed memory in its heap (fragmented: it cannot return
// it from the top), so RSS crept ~100 MiB above what the cache held. malloc_trim
// releases free pages anywhere in the heaps.
static napi_value malloc_trim_fn(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  napi_get_boolean(env, malloc_trim(0) != 0, &out);
  return out;
}

// setMmapThreshold(bytes): glibc serves allocations of at least `bytes` with their
// own mappings, returned to the system the moment they are freed. By default the
// threshold rises to the largest block freed so far (up to 32 MiB), after which
// every blob-sized buffer lands in the fragmented heaps and stays resident.
static napi_value set_mmap_threshold(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv, "setMmapThreshold(bytes)")) return NULL;
  size_t bytes;
  if (!uint_arg(env, argv[0], &bytes, "bytes")) return NULL;
  napi_value out;
  napi_get_boolean(env, bytes <= 0x7fffffff && mallopt(M_MMAP_THRESHOLD, (int)bytes) == 1, &out);
  return out;
}

// alignedBytes(size, align): a Uint8Array of `size` bytes whose first byte lies on
// an `align` boundary (a power of two), inside a V8-owned ArrayBuffer. O_DIRECT
// writes need such memory, and JavaScript cannot see an address to align by.
static napi_value aligned_bytes(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv, "alignedBytes(size, align)")) return NULL;
  size_t size, align;
  if (!uint_arg(env, argv[0], &size, "size") || !uint_arg(env, argv[1], &align, "align")) return NULL;
  if (align == 0 || (align & (align - 1)) != 0 || align > 1 << 20) {
    napi_throw_range_error(env, NULL, "alignedBytes: align must be a power of two up to 1 MiB");
    return NULL;
  }
  void *data;
  napi_value ab, out;
  if (napi_create_arraybuffer(env, size + align, &data, &ab) != napi_ok) return NULL;
  size_t skip = (align - ((uintptr_t)data & (align - 1))) & (align - 1);
  if (napi_create_typedarray(env, napi_uint8_array, size, ab, skip, &out) != napi_ok) return NULL;
  return out;
}

// ---- AES-256-GCM ----------------------------------------------------------------
// Node's Cipher returns a new Buffer from every update(): for a backup that is one
// allocation per blob, up to 8 MiB each, freed only when V8 next collects. These
// use the OpenSSL that Node itself links and exports, and write into the caller's
// memory. The nonce scheme and subkeys stay in aead.ts; these see one key and IV.

static bool bytes_arg(napi_env env, napi_value v, uint8_t **data, size_t *len, const char *what) {
  bool is_typed = false;
  napi_typedarray_type type = napi_int8_array;
  napi_is_typedarray(env, v, &is_typed);
  if (is_typed) {
    napi_value ab;
    size_t offset;
    napi_get_typedarray_info(env, v, &type, len, (void **)data, &ab, &offset);
  }
  if (!is_typed || type != napi_uint8_array) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be a Uint8Array", what);
    napi_throw_type_error(env, NULL, msg);
    return false;
  }
  return true;
}

static bool uint_arg(napi_env env, napi_value v, size_t *out, const char *what) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || d < 0 || d != (double)(size_t)d) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be a non-negative integer", what);
    napi_throw_type_error(env, NULL, msg);
    return false;
  }
  *out = (size_t)d;
  return true;
}

static EVP_CIPHER_CTX *gcm_start(const uint8_t *key, const uint8_t *iv, int encrypt) {
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  if (!ctx) return NULL;
  if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, encrypt) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) != 1 ||
      EVP_CipherInit_ex(ctx, NULL, NULL, key, iv, encrypt) != 1) {
    EVP_CIPHER_CTX_free(ctx);
    return NULL;
  }
  return ctx;
}

// OpenSSL's update takes an int length: feed larger inputs in pieces.
static int gcm_update(EVP_CIPHER_CTX *ctx, uint8_t *out, const uint8_t *in, size_t len) {
  while (len > 0) {
    int n = len > (1u << 30) ? (1 << 30) : (int)len;
    int got;
    if (EVP_CipherUpdate(ctx, out, &got, in, n) != 1 || got != n) return 0;
    if (out) out += n;
    in += n;
    len -= (size_t)n;
  }
  return 1;
}

// gcmSealInto(key32, iv12, ad, a, b, out, offset): encrypt a‖b (b may be empty) into
// out[offset…] followed by the 16-byte tag; returns the bytes written.
static napi_value gcm_seal_into(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  if (!get_args(env, info, 7, argv, "gcmSealInto(key, iv, ad, a, b, out, offset)")) return NULL;
  uint8_t *key, *iv, *ad, *a, *b, *out;
  size_t key_len, iv_len, ad_len, a_len, b_len, out_len, offset;
  if (!bytes_arg(env, argv[0], &key, &key_len, "key") || !bytes_arg(env, argv[1], &iv, &iv_len, "iv") ||
      !bytes_arg(env, argv[2], &ad, &ad_len, "ad") || !bytes_arg(env, argv[3], &a, &a_len, "a") ||
      !bytes_arg(env, argv[4], &b, &b_len, "b") || !bytes_arg(env, argv[5], &out, &out_len, "out") ||
      !uint_arg(env, argv[6], &offset, "offset"))
    return NULL;
  if (key_len != 32 || iv_len != 12) {
    napi_throw_range_error(env, NULL, "gcmSealInto: the key must be 32 bytes and the IV 12");
    return NULL;
  }
  size_t total = a_len + b_len + 16;
  if (offset > out_len || out_len - offset < total) {
    napi_throw_range_error(env, NULL, "gcmSealInto: no room in the output buffer");
    return NULL;
  }
  EVP_CIPHER_CTX *ctx = gcm_start(key, iv, 1);
  uint8_t *dst = out + offset;
  int ok = ctx != NULL;
  int tail;
  ok = ok && gcm_update(ctx, NULL, ad, ad_len);
  ok = ok && gcm_update(ctx, dst, a, a_len);
  ok = ok && gcm_update(ctx, dst + a_len, b, b_len);
  ok = ok && EVP_EncryptFinal_ex(ctx, dst + a_len + b_len, &tail) == 1 && tail == 0;
  ok = ok && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, dst + a_len + b_len) == 1;
  if (ctx) EVP_CIPHER_CTX_free(ctx);
  if (!ok) {
    napi_throw_error(env, NULL, "gcmSealInto: OpenSSL failed");
    return NULL;
  }
  napi_value result;
  napi_create_double(env, (double)total, &result);
  return result;
}

// gcmOpenInPlace(key32, iv12, ad, data, tag16): decrypt data where it lies; returns
// false (data then holds garbage) if the tag does not authenticate it.
static napi_value gcm_open_in_place(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!get_args(env, info, 5, argv, "gcmOpenInPlace(key, iv, ad, data, tag)")) return NULL;
  uint8_t *key, *iv, *ad, *data, *tag;
  size_t key_len, iv_len, ad_len, data_len, tag_len;
  if (!bytes_arg(env, argv[0], &key, &key_len, "key") || !bytes_arg(env, argv[1], &iv, &iv_len, "iv") ||
      !bytes_arg(env, argv[2], &ad, &ad_len, "ad") || !bytes_arg(env, argv[3], &data, &data_len, "data") ||
      !bytes_arg(env, argv[4], &tag, &tag_len, "tag"))
    return NULL;
  if (key_len != 32 || iv_len != 12 || tag_len != 16) {
    napi_throw_range_error(env, NULL, "gcmOpenInPlace: the key must be 32 bytes, the IV 12 and the tag 16");
    return NULL;
  }
  EVP_CIPHER_CTX *ctx = gcm_start(key, iv, 0);
  if (!ctx) {
    napi_throw_error(env, NULL, "gcmOpenInPlace: OpenSSL failed");
    return NULL;
  }
  uint8_t tag_copy[16], none[16];
  memcpy(tag_copy, tag, 16);
  int tail;
  int ok = gcm_update(ctx, NULL, ad, ad_len) && gcm_update(ctx, data, data, data_len) &&
           EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, tag_copy) == 1;
  int authentic = ok && EVP_DecryptFinal_ex(ctx, none, &tail) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok) {
    napi_throw_error(env, NULL, "gcmOpenInPlace: OpenSSL failed");
    return NULL;
  }
  napi_value result;
  napi_get_boolean(env, authentic != 0, &result);
  return result;
}

// scanDir(path) -> Buffer | number
// Reads a directory and lstat's every entry relative to its descriptor
// (fstatat, AT_SYMLINK_NOFOLLOW): one call instead of a readdir and a
// BigIntStats object per entry. On success a Buffer of records, one per entry
// except "." and "..", sorted by the bytes of the names (as Buffer.compare
// orders them, which is the order of a tree), so an unchanged directory gives
// the same bytes every time:
//   u16 name length | name bytes | u32 errno (0: the stat fields are valid) |
//   u32 mode | u32 uid | u32 gid | u64 nlink | u64 dev | u64 rdev |
//   u64 size | i64 mtime ns | i64 ctime ns | u64 inode | i64 atime ns
// all little-endian. The 32 bytes from size to inode have the layout of an
// entry of the file cache (src/state/filecache.ts), so they compare as bytes.
// A failure to open or read the directory itself returns -errno (the caller
// repeats the work with Node's calls to report the error in Node's words).
#define SCAN_RECORD 80
struct outbuf { uint8_t *p; size_t len, cap; };
static int out_reserve(struct outbuf *o, size_t n) {
  if (o->len + n <= o->cap) return 1;
  size_t cap = o->cap ? o->cap : 16384;
  while (cap < o->len + n) cap *= 2;
  uint8_t *p = realloc(o->p, cap);
  if (!p) return 0;
  o->p = p;
  o->cap = cap;
  return 1;
}
static void put_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put_u32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put_u64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static int64_t ts_ns(struct timespec t) { return (int64_t)t.tv_sec * 1000000000 + (int64_t)t.tv_nsec; }

static int entry_cmp(const void *a, const void *b, void *base) {
  const uint8_t *x = (const uint8_t *)base + *(const size_t *)a, *y = (const uint8_t *)base + *(const size_t *)b;
  size_t lx = (size_t)x[0] | ((size_t)x[1] << 8), ly = (size_t)y[0] | ((size_t)y[1] << 8);
  int c = memcmp(x + 2, y + 2, lx < ly ? lx : ly);
  if (c != 0) return c;
  return lx < ly ? -1 : lx > ly ? 1 : 0;
}

// How a backup opens a file the scan found to be regular: never through a
// symlink, never blocking on a FIFO swapped in since (backupOpen, prefetchFiles).
#define SOURCE_OPEN_FLAGS (O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)

// open(2) with O_NOATIME where the kernel allows it (the file's owner, or
// root), plainly otherwise: reading for a backup must not move access times.
static int open_noatime(const char *path, int flags) {
  int fd = open(path, flags | O_NOATIME);
  if (fd < 0 && errno == EPERM) fd = open(path, flags);
  return fd;
}

// Optional trailing (dev, ino) BigInt arguments: the identity a scan recorded for
// a path. A path that leads elsewhere when opened (a directory above it swapped
// for a symlink since, say) must not be read as if it were the scanned entry.
static bool identity_args(napi_env env, napi_value *argv, size_t argc, size_t at, bool *given, uint64_t *dev, uint64_t *ino) {
  *given = false;
  if (argc < at + 2) return true;
  napi_valuetype t;
  napi_typeof(env, argv[at], &t);
  if (t == napi_undefined) return true;
  bool lossless;
  if (napi_get_value_bigint_uint64(env, argv[at], dev, &lossless) != napi_ok ||
      napi_get_value_bigint_uint64(env, argv[at + 1], ino, &lossless) != napi_ok) {
    napi_throw_type_error(env, NULL, "dev and ino must be BigInts");
    return false;
  }
  *given = true;
  return true;
}

static napi_value scan_dir(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  size_t argc = 3;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1) {
    napi_throw_type_error(env, NULL, "scanDir(path, [dev, ino])");
    return NULL;
  }
  bool check;
  uint64_t want_dev, want_ino;
  if (!identity_args(env, argv, argc, 1, &check, &want_dev, &want_ino)) return NULL;
  char *p = path_arg(env, argv[0]);
  if (!p) return NULL;
  // O_NOATIME: listing a directory would otherwise move its access time (relatime
  // does once a day, or whenever it is older than the mtime), which its parent's
  // tree records, so every daily backup would store every tree again. Only the
  // owner (or root) may ask for it: anyone else lists as usual. O_NOFOLLOW: a
  // directory swapped for a symlink since its parent was scanned is not listed.
  const int flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW;
  int fd = open_noatime(p, flags);
  int err = errno;
  free(p);
  napi_value result;
  if (fd < 0) {
    napi_create_int32(env, -err, &result);
    return result;
  }
  struct stat self;
  if (check && (fstat(fd, &self) != 0 || (uint64_t)self.st_dev != want_dev || (uint64_t)self.st_ino != want_ino)) {
    close(fd);
    napi_create_int32(env, -ESTALE, &result);
    return result;
  }
  DIR *d = fdopendir(fd);
  if (!d) {
    err = errno;
    close(fd);
    napi_create_int32(env, -err, &result);
    return result;
  }
  struct outbuf o = { NULL, 0, 0 };
  err = 0;
  for (;;) {
    errno = 0;
    struct dirent *e = readdir(d);
    if (!e) {
      err = errno;
      break;
    }
    const char *name = e->d_name;
    if (name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0))) continue;
    size_t n = strlen(name);
    if (!out_reserve(&o, 2 + n + SCAN_RECORD)) {
      err = ENOMEM;
      break;
    }
    uint8_t *w = o.p + o.len;
    put_u16(w, (uint16_t)n);
    memcpy(w + 2, name, n);
    w += 2 + n;
    memset(w, 0, SCAN_RECORD);
    struct stat st;
    if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      put_u32(w, (uint32_t)(errno ? errno : EIO));
    } else {
      put_u32(w + 4, (uint32_t)st.st_mode);
      put_u32(w + 8, (uint32_t)st.st_uid);
      put_u32(w + 12, (uint32_t)st.st_gid);
      put_u64(w + 16, (uint64_t)st.st_nlink);
      put_u64(w + 24, (uint64_t)st.st_dev);
      put_u64(w + 32, (uint64_t)st.st_rdev);
      put_u64(w + 40, (uint64_t)st.st_size);
      put_u64(w + 48, (uint64_t)ts_ns(st.st_mtim));
      put_u64(w + 56, (uint64_t)ts_ns(st.st_ctim));
      put_u64(w + 64, (uint64_t)st.st_ino);
      put_u64(w + 72, (uint64_t)ts_ns(st.st_atim));
    }
    o.len += 2 + n + SCAN_RECORD;
  }
  closedir(d);
  if (err != 0) {
    free(o.p);
    napi_create_int32(env, -err, &result);
    return result;
  }
  // Sort: record offsets, then copy the records in order into the result.
  size_t count = 0;
  for (size_t at = 0; at < o.len; count++) at += 2 + ((size_t)o.p[at] | ((size_t)o.p[at + 1] << 8)) + SCAN_RECORD;
  size_t *offsets = malloc((count ? count : 1) * sizeof *offsets);
  if (!offsets) {
    free(o.p);
    napi_create_int32(env, -ENOMEM, &result);
    return result;
  }
  for (size_t i = 0, at = 0; i < count; i++) {
    offsets[i] = at;
    at += 2 + ((size_t)o.p[at] | ((size_t)o.p[at + 1] << 8)) + SCAN_RECORD;
  }
  qsort_r(offsets, count, sizeof *offsets, entry_cmp, o.p);
  uint8_t *data;
  napi_status s = napi_create_buffer(env, o.len, (void **)&data, &result);
  if (s == napi_ok) {
    size_t w = 0;
    for (size_t i = 0; i < count; i++) {
      const uint8_t *e = o.p + offsets[i];
      size_t n = 2 + ((size_t)e[0] | ((size_t)e[1] << 8)) + SCAN_RECORD;
      memcpy(data + w, e, n);
      w += n;
    }
  }
  free(offsets);
  free(o.p);
  if (s != napi_ok) {
    napi_throw_error(env, NULL, "scanDir: cannot allocate the result");
    return NULL;
  }
  return result;
}

// A path argument copied into `out` (PATH_MAX + 1 bytes); false if it is not a
// Buffer, holds a NUL byte or is too long (the caller then takes Node's path).
static bool path_into(napi_env env, napi_value v, char *out) {
  void *data;
  size_t len;
  if (napi_get_buffer_info(env, v, &data, &len) != napi_ok || len > PATH_MAX || memchr(data, 0, len)) return false;
  memcpy(out, data, len);
  out[len] = 0;
  return true;
}

// The directory of the last restored file, open, so that the next files in it
// are created relative to it instead of walking their whole paths
// again (perf: ~3% of a restore's CPU in path walks, for three walks per file).
// Kept for one worker request at most: restoreDirDone() drops it.
static __thread char dir_path[PATH_MAX + 1];
static __thread size_t dir_len;
static __thread int dir_fd = -1;

static void drop_dir(void) {
  if (dir_fd >= 0) close(dir_fd);
  dir_fd = -1;
  dir_len = 0;
}

// A descriptor for the directory `p[0, n)`, or AT_FDCWD if it cannot be opened
// (the caller then uses whole paths).
static int dir_for(const char *p, size_t n) {
  if (dir_fd >= 0 && n == dir_len && memcmp(p, dir_path, n) == 0) return dir_fd;
  drop_dir();
  memcpy(dir_path, p, n);
  dir_path[n] = 0;
  int fd = open(dir_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return AT_FDCWD;
  dir_fd = fd;
  dir_len = n;
  return fd;
}

static napi_value restore_dir_done(napi_env env, napi_callback_info info) {
  (void)env;
  (void)info;
  drop_dir();
  return NULL;
}

// restoreWholeFile(dest, data | null, size, chown, uid, gid, mode, atimeNs, mtimeNs)
// The whole of a restored file, made under its final name: create `dest`
// (O_EXCL, so only where nothing is; never through a symlink), write `data`, set
// the size when it differs (a hole for the rest), owner (if `chown`) then mode
// (chown clears setuid/setgid), each only if it differs, times, close.
// Returns 0, or an errno after removing the file it made (never one it did not
// make); the caller then does the work with Node's calls (a temporary name and
// a rename that replaces what is there), whose errors it reports.
// Each Node fs call costs a few microseconds beyond its system call; 30,000
// small files made seven each, on the restore's worker threads.
static napi_value restore_whole_file(napi_env env, napi_callback_info info) {
  napi_value argv[9];
  if (!get_args(env, info, 9, argv, "restoreWholeFile(dest, data, size, chown, uid, gid, mode, atimeNs, mtimeNs)")) return NULL;
  static __thread char dest[PATH_MAX + 1];
  napi_value result;
  if (!path_into(env, argv[0], dest)) {
    napi_create_int32(env, EINVAL, &result);
    return result;
  }
  const uint8_t *data = NULL;
  size_t len = 0;
  napi_valuetype t;
  napi_typeof(env, argv[1], &t);
  if (t != napi_null && t != napi_undefined) {
    void *d;
    if (napi_get_buffer_info(env, argv[1], &d, &len) != napi_ok) {
      napi_create_int32(env, EINVAL, &result);
      return result;
    }
    data = d;
  }
  double size_d;
  bool chown_b;
  uint32_t uid, gid, mode;
  napi_get_value_double(env, argv[2], &size_d);
  napi_get_value_bool(env, argv[3], &chown_b);
  napi_get_value_uint32(env, argv[4], &uid);
  napi_get_value_uint32(env, argv[5], &gid);
  napi_get_value_uint32(env, argv[6], &mode);
  struct timespec ts[2];
  if (!ns_arg(env, argv[7], &ts[0]) || !ns_arg(env, argv[8], &ts[1])) return NULL;
  off_t size = (off_t)size_d;

  int err = 0;
  // Created with its final permission bits where the umask allows, so that
  // fstat shows whether fchmod (and, as root, fchown) would change anything:
  // each call skipped is an inode update fewer (~2 us each). A file that will
  // change owner is first narrowed to 0600, before any byte is written, so a
  // partial file is never readable by a group or others it will not have.
  // Relative to the directory the last file went into, when this one goes there too.
  int dfd = AT_FDCWD;
  const char *name = dest;
  const char *slash = strrchr(dest, '/');
  if (slash && slash > dest) {
    dfd = dir_for(dest, (size_t)(slash - dest));
    if (dfd != AT_FDCWD) name = slash + 1;
  }
  int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode_t)(mode & 0777));
  if (fd < 0) {
    napi_create_int32(env, errno, &result);
    return result;
  }
  struct stat st;
  bool set_owner = false;
  if (fstat(fd, &st) != 0) err = errno;
  if (!err && chown_b && (st.st_uid != (uid_t)uid || st.st_gid != (gid_t)gid)) {
    set_owner = true;
    if (fchmod(fd, 0600) != 0) err = errno;
  }
  size_t done = 0;
  while (!err && done < len) {
    ssize_t n = write(fd, data + done, len - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    done += (size_t)n;
  }
  if (!err && (off_t)len != size && ftruncate(fd, size) != 0) err = errno;
  if (!err && set_owner && fchown(fd, (uid_t)uid, (gid_t)gid) != 0) err = errno;
  // chmod after chown: chown clears setuid/setgid.
  if (!err && (set_owner || (st.st_mode & 07777) != (mode & 07777)) && fchmod(fd, (mode_t)mode) != 0) err = errno;
  if (!err && futimens(fd, ts) != 0) err = errno;
  if (close(fd) != 0 && !err) err = errno;
  if (err) unlinkat(dfd, name, 0);
  napi_create_int32(env, err, &result);
  return result;
}

static bool fd_arg(napi_env env, napi_value v, int32_t *fd) {
  if (napi_get_value_int32(env, v, fd) == napi_ok) return true;
  napi_throw_type_error(env, NULL, "fd must be an integer");
  return false;
}

// willNeed(fd, offset, length) -> 0 or an errno. A restore reads each range of a
// pack once, in a worker thread that waits for the disk and then decrypts: asked
// for while the thread is still busy with the range before, the kernel reads it
// meanwhile (posix_fadvise returns once the reads are queued).
static napi_value will_need(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv, "willNeed(fd, offset, length)")) return NULL;
  int32_t fd;
  size_t offset, length;
  if (!fd_arg(env, argv[0], &fd)) return NULL;
  if (!uint_arg(env, argv[1], &offset, "offset") || !uint_arg(env, argv[2], &length, "length")) return NULL;
  napi_value out;
  napi_create_int32(env, posix_fadvise(fd, (off_t)offset, (off_t)length, POSIX_FADV_WILLNEED), &out);
  return out;
}

// copyBytes(source, target, targetStart, sourceStart, sourceEnd): what
// source.copy(target, targetStart, sourceStart, sourceEnd) does, for buffers in
// shared memory, where V8 copies with relaxed atomic word stores: the backup's
// read window (other threads seal chunks straight from it) took 51 ms instead
// of 16 ms to shift for the 256 MiB image; the mount's chunk cache arena
// (mount/blob-arena.ts) is copied from for every read. The ranges must fit
// (a RangeError otherwise); they may overlap within one buffer.
static napi_value copy_bytes(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!get_args(env, info, 5, argv, "copyBytes(source, target, targetStart, sourceStart, sourceEnd)")) return NULL;
  uint8_t *src, *dst;
  size_t src_len, dst_len, target, start, end;
  if (!bytes_arg(env, argv[0], &src, &src_len, "source") || !bytes_arg(env, argv[1], &dst, &dst_len, "target") ||
      !uint_arg(env, argv[2], &target, "targetStart") || !uint_arg(env, argv[3], &start, "sourceStart") || !uint_arg(env, argv[4], &end, "sourceEnd"))
    return NULL;
  if (start > end || end > src_len || target > dst_len || dst_len - target < end - start) {
    napi_throw_range_error(env, NULL, "copyBytes: range outside a buffer");
    return NULL;
  }
  memmove(dst + target, src + start, end - start);
  return NULL;
}

// readCached(fd, bytes, offset) -> bytes read (short only at the end of the
// file), or -errno: -EAGAIN when any of it is not in the page cache. The mount
// reads a small blob of a local pack on the JavaScript thread with it, and only
// what is cached: nothing there may wait for a disk. Through libuv's pool the
// same read took three thread hand-offs (open, read, close).
static napi_value read_cached(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv, "readCached(fd, bytes, offset)")) return NULL;
  int32_t fd;
  uint8_t *data;
  size_t len, offset;
  if (!fd_arg(env, argv[0], &fd)) return NULL;
  if (!bytes_arg(env, argv[1], &data, &len, "bytes") || !uint_arg(env, argv[2], &offset, "offset")) return NULL;
  size_t done = 0;
  while (done < len) {
    struct iovec iov = {.iov_base = data + done, .iov_len = len - done};
    ssize_t n = preadv2(fd, &iov, 1, (off_t)(offset + done), RWF_NOWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      done = (size_t)-errno;
      break;
    }
    if (n == 0) break;
    done += (size_t)n;
  }
  napi_value out;
  napi_create_double(env, (double)(ssize_t)done, &out);
  return out;
}

// madvise(`advice`) on the whole pages inside the one argument, a Uint8Array
// (a page at either edge that it shares with other bytes is left alone).
static napi_value advise_pages(napi_env env, napi_callback_info info, int advice, const char *usage) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv, usage)) return NULL;
  uint8_t *data;
  size_t len;
  if (!bytes_arg(env, argv[0], &data, &len, "bytes")) return NULL;
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  uintptr_t start = ((uintptr_t)data + page - 1) & ~(page - 1), end = ((uintptr_t)data + len) & ~(page - 1);
  bool ok = end <= start || madvise((void *)start, end - start, advice) == 0;
  napi_value result;
  napi_get_boolean(env, ok, &result);
  return result;
}

// prefault(bytes) -> boolean: fault in, writable, every whole page of a new
// buffer in one call (madvise MADV_POPULATE_WRITE, Linux 5.14+) instead of one
// page fault per 4 KiB as it is first written. False where the kernel cannot.
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
static napi_value prefault(napi_env env, napi_callback_info info) {
  return advise_pages(env, info, MADV_POPULATE_WRITE, "prefault(bytes)");
}

// discard(bytes) -> boolean: madvise(MADV_DONTNEED) on the whole pages inside
// `bytes`: their memory goes back to the system now, and reads as zeros next
// time. For regions of the mount's chunk cache arena that no blob uses.
static napi_value discard(napi_env env, napi_callback_info info) {
  return advise_pages(env, info, MADV_DONTNEED, "discard(bytes)");
}

// The stat fields a backup compares before and after reading a file, as doubles
// (no BigInt to allocate): size, mtime seconds and nanoseconds, ctime seconds and
// nanoseconds; then the descriptor, and whether the first read had to wait for
// the disk.
enum { ST_SIZE, ST_MTIME_S, ST_MTIME_NS, ST_CTIME_S, ST_CTIME_NS, ST_FD, ST_COLD, ST_FIELDS };

static bool stat_arg(napi_env env, napi_value v, double **out) {
  napi_typedarray_type type;
  size_t len;
  void *data;
  if (napi_get_typedarray_info(env, v, &type, &len, &data, NULL, NULL) != napi_ok || type != napi_float64_array || len < ST_FIELDS) {
    napi_throw_type_error(env, NULL, "stat must be a Float64Array of 7");
    return false;
  }
  *out = data;
  return true;
}

static void put_stat(double *out, const struct stat *st) {
  out[ST_SIZE] = (double)st->st_size;
  out[ST_MTIME_S] = (double)st->st_mtim.tv_sec;
  out[ST_MTIME_NS] = (double)st->st_mtim.tv_nsec;
  out[ST_CTIME_S] = (double)st->st_ctim.tv_sec;
  out[ST_CTIME_NS] = (double)st->st_ctim.tv_nsec;
}

// backupOpen(path, bytes, offset, stat) -> bytes read into bytes[offset…], or
// -errno. Opens without updating atime where the kernel lets us (only the owner
// or root may), fstats into stat and reads once; the descriptor is left open in
// stat[5]. The scan saw a regular file, but it may have been replaced since: a
// symlink is not followed (O_NOFOLLOW: a root backup must not read a file some
// user pointed it at), a FIFO does not block the open (O_NONBLOCK), and what is
// not a regular file is not read (-EINVAL; the caller says what it became).
// Given the scan's (dev, ino), another file found at the path is not read
// either (-ESTALE). A small file costs one call here and one backupStat:
// through Node's fs each of open, fstat, read, fstat and close was its own
// call, and each fstat built a BigIntStats with four Dates (~8 us a file in a
// worker's profile). On any failure nothing is left open and the caller
// repeats the step with Node's calls, which word the error.
static napi_value backup_open(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  size_t argc = 6;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 4) {
    napi_throw_type_error(env, NULL, "backupOpen(path, bytes, offset, stat, [dev, ino])");
    return NULL;
  }
  uint8_t *data;
  size_t len, offset;
  double *out;
  bool check;
  uint64_t want_dev, want_ino;
  if (!bytes_arg(env, argv[1], &data, &len, "bytes") || !uint_arg(env, argv[2], &offset, "offset") || !stat_arg(env, argv[3], &out) ||
      !identity_args(env, argv, argc, 4, &check, &want_dev, &want_ino))
    return NULL;
  if (offset > len) {
    napi_throw_range_error(env, NULL, "backupOpen: offset outside the buffer");
    return NULL;
  }
  char *p = path_arg(env, argv[0]);
  if (!p) return NULL;
  ssize_t result;
  int fd = open_noatime(p, SOURCE_OPEN_FLAGS);
  free(p);
  struct stat st;
  if (fd < 0) {
    result = -errno;
  } else if (fstat(fd, &st) != 0) {
    result = -errno;
    close(fd);
  } else if (!S_ISREG(st.st_mode)) {
    result = -EINVAL;
    close(fd);
  } else if (check && ((uint64_t)st.st_dev != want_dev || (uint64_t)st.st_ino != want_ino)) {
    result = -ESTALE;
    close(fd);
  } else {
    // First without waiting for the disk (RWF_NOWAIT, at the file's offset): a
    // file that is not in the page cache is marked cold, and the caller has the
    // files after it read ahead (prefetchFiles) instead of waiting for each.
    struct iovec iov = {.iov_base = data + offset, .iov_len = len - offset};
    bool cold = false;
    do result = preadv2(fd, &iov, 1, -1, RWF_NOWAIT);
    while (result < 0 && errno == EINTR);
    if (result < 0) {
      cold = errno == EAGAIN;
      do result = read(fd, data + offset, len - offset);
      while (result < 0 && errno == EINTR);
    }
    if (result < 0) {
      result = -errno;
      close(fd);
    } else {
      put_stat(out, &st);
      out[ST_FD] = fd;
      out[ST_COLD] = cold;
    }
  }
  napi_value v;
  napi_create_double(env, (double)result, &v);
  return v;
}

// prefetchFiles(paths) -> how many were asked for: have the kernel start
// reading the first PREFETCH_BYTES of each of paths into the page cache
// (posix_fadvise WILLNEED) and return at once. A worker reads small files one
// after another, each read waiting for the disk when the file is not cached
// (one request in flight: 2.8 s for the bench tree's 30,000 small files cold,
// 1.1 s with 16 at a time); after a cold file it asks for the rest of its batch
// here. Failures are ignored: the real open reports them.
#define PREFETCH_BYTES (4 << 20)
static napi_value prefetch_files(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv, "prefetchFiles(paths)")) return NULL;
  uint32_t n;
  if (napi_get_array_length(env, argv[0], &n) != napi_ok) {
    napi_throw_type_error(env, NULL, "prefetchFiles(paths): an array of path buffers");
    return NULL;
  }
  uint32_t asked = 0;
  for (uint32_t i = 0; i < n; i++) {
    napi_value item;
    char path[PATH_MAX + 1];
    if (napi_get_element(env, argv[0], i, &item) != napi_ok || !path_into(env, item, path)) continue;
    int fd = open_noatime(path, SOURCE_OPEN_FLAGS);
    if (fd < 0) continue;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && posix_fadvise(fd, 0, PREFETCH_BYTES, POSIX_FADV_WILLNEED) == 0) asked++;
    close(fd);
  }
  napi_value v;
  napi_create_uint32(env, asked, &v);
  return v;
}

// backupStat(fd, stat, close) -> 0 or -errno: fstat into stat (the check for a
// file that changed while read), then close the descriptor if asked. On a
// failure it stays open, for the caller to word the error with Node's fstat.
static napi_value backup_stat(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv, "backupStat(fd, stat, close)")) return NULL;
  int32_t fd;
  double *out;
  bool done;
  if (!fd_arg(env, argv[0], &fd)) return NULL;
  if (napi_get_value_bool(env, argv[2], &done) != napi_ok) {
    napi_throw_type_error(env, NULL, "close must be a boolean");
    return NULL;
  }
  if (!stat_arg(env, argv[1], &out)) return NULL;
  struct stat st;
  int result = fstat(fd, &st) == 0 ? 0 : -errno;
  if (result == 0) {
    put_stat(out, &st);
    if (done) close(fd);
  }
  napi_value v;
  napi_create_int32(env, result, &v);
  return v;
}

// closeFd(fd) -> 0 or -errno. A descriptor the addon opened is closed by the
// addon: Node's closeSync in a worker thread warns about descriptors its fs did
// not open.
static napi_value close_fd(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv, "closeFd(fd)")) return NULL;
  int32_t fd;
  if (!fd_arg(env, argv[0], &fd)) return NULL;
  napi_value v;
  napi_create_int32(env, close(fd) == 0 ? 0 : -errno, &v);
  return v;
}

// ---- extended attributes ----
// Packed form, shared with src/snapshot/xattrs.ts: per attribute a u16 (LE)
// name length, the name, a u32 (LE) value length, the value.

static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t get_u32(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24); }

// A buffer holding what llistxattr (name NULL) or lgetxattr returns, sized by
// asking first; the list or value may grow in between (ERANGE), so ask again then.
static ssize_t xattr_fetch(const char *path, const char *name, char **out) {
  *out = NULL;
  for (int attempt = 0; attempt < 8; attempt++) {
    ssize_t n = name ? lgetxattr(path, name, NULL, 0) : llistxattr(path, NULL, 0);
    if (n <= 0) return n;
    char *buf = malloc((size_t)n);
    if (!buf) {
      errno = ENOMEM;
      return -1;
    }
    ssize_t got = name ? lgetxattr(path, name, buf, (size_t)n) : llistxattr(path, buf, (size_t)n);
    if (got >= 0) {
      *out = buf;
      return got;
    }
    free(buf);
    if (errno != ERANGE) return -1;
  }
  errno = ERANGE;
  return -1;
}

// readXattrs(path) -> packed Buffer, null when there are none (or the file
// system has none), or -errno. Never follows a symlink at the end of `path`.
static napi_value read_xattrs(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  if (!get_args(env, info, 1, argv, "readXattrs(path)")) return NULL;
  char *path = path_arg(env, argv[0]);
  if (!path) return NULL;
  char *names = NULL;
  ssize_t n = xattr_fetch(path, NULL, &names);
  int err = n < 0 ? errno : 0;
  struct outbuf o = { NULL, 0, 0 };
  for (ssize_t at = 0; !err && at < n;) {
    const char *name = names + at;
    size_t name_len = strlen(name);
    at += (ssize_t)name_len + 1;
    if (name_len == 0 || name_len > 0xffff) continue;
    char *value = NULL;
    ssize_t vlen = xattr_fetch(path, name, &value);
    if (vlen < 0) {
      // Removed since it was listed: as if it never was.
      if (errno != ENODATA) err = errno;
      continue;
    }
    if (!out_reserve(&o, 2 + name_len + 4 + (size_t)vlen)) {
      err = ENOMEM;
    } else {
      uint8_t *w = o.p + o.len;
      put_u16(w, (uint16_t)name_len);
      memcpy(w + 2, name, name_len);
      put_u32(w + 2 + name_len, (uint32_t)vlen);
      if (vlen) memcpy(w + 2 + name_len + 4, value, (size_t)vlen);
      o.len += 2 + name_len + 4 + (size_t)vlen;
    }
    free(value);
  }
  free(names);
  free(path);
  if (err == ENOTSUP) err = 0;
  if (err) napi_create_int32(env, -err, &result);
  else if (o.len == 0) napi_get_null(env, &result);
  else napi_create_buffer_copy(env, o.len, o.p, NULL, &result);
  free(o.p);
  return result;
}

// setXattrs(fd | path, packed, follow) -> 0 or the errno of the first attribute
// that could not be set (the others are still tried). Which ones a process may
// set is decided in JavaScript (settableXattrs).
static napi_value set_xattrs(napi_env env, napi_callback_info info) {
  napi_value argv[3], result;
  if (!get_args(env, info, 3, argv, "setXattrs(fdOrPath, packed, follow)")) return NULL;
  napi_valuetype t;
  napi_typeof(env, argv[0], &t);
  int32_t fd = -1;
  char *path = NULL;
  if (t == napi_number) {
    if (!fd_arg(env, argv[0], &fd)) return NULL;
  } else if (!(path = path_arg(env, argv[0]))) {
    return NULL;
  }
  void *data;
  size_t len;
  bool follow;
  if (napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok) {
    free(path);
    napi_throw_type_error(env, NULL, "packed attributes must be a Buffer");
    return NULL;
  }
  napi_get_value_bool(env, argv[2], &follow);
  const uint8_t *p = data;
  int first = 0;
  char name[XATTR_NAME_MAX + 1];
  for (size_t at = 0; at + 2 <= len;) {
    size_t nl = get_u16(p + at);
    const uint8_t *name_at = p + at + 2;
    if (at + 2 + nl + 4 > len) {
      first = first ? first : EINVAL;
      break;
    }
    size_t vl = get_u32(p + at + 2 + nl);
    const uint8_t *value = p + at + 2 + nl + 4;
    if ((size_t)(value - p) + vl > len) {
      first = first ? first : EINVAL;
      break;
    }
    at = (size_t)(value - p) + vl;
    // No file system takes a longer name: never set a shortened one in its place.
    if (nl > XATTR_NAME_MAX) {
      first = first ? first : ERANGE;
      continue;
    }
    memcpy(name, name_at, nl);
    name[nl] = 0;
    int rc = fd >= 0 ? fsetxattr(fd, name, value, vl, 0) : follow ? setxattr(path, name, value, vl, 0) : lsetxattr(path, name, value, vl, 0);
    if (rc != 0 && !first) first = errno;
  }
  free(path);
  napi_create_int32(env, first, &result);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  static const struct {
    const char *name;
    napi_callback fn;
  } functions[] = {
      {"utimens", utimens},
      {"futimens", futimens_fn},
      {"mknod", do_mknod},
      {"fastcdcCut", fastcdc_cut},
      {"mallocTrim", malloc_trim_fn},
      {"setMmapThreshold", set_mmap_threshold},
      {"alignedBytes", aligned_bytes},
      {"gcmSealInto", gcm_seal_into},
      {"gcmOpenInPlace", gcm_open_in_place},
      {"scanDir", scan_dir},
      {"restoreWholeFile", restore_whole_file},
      {"restoreDirDone", restore_dir_done},
      {"willNeed", will_need},
      {"copyBytes", copy_bytes},
      {"readCached", read_cached},
      {"prefault", prefault},
      {"discard", discard},
      {"backupOpen", backup_open},
      {"backupStat", backup_stat},
      {"closeFd", close_fd},
      {"prefetchFiles", prefetch_files},
      {"readXattrs", read_xattrs},
      {"setXattrs", set_xattrs},
  };
  for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++) {
    napi_value fn;
    napi_create_function(env, functions[i].name, NAPI_AUTO_LENGTH, functions[i].fn, NULL, &fn);
    napi_set_named_property(env, exports, functions[i].name, fn);
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

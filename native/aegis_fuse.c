/*
 * The FUSE binding of `aegis mount` (libfuse 3, high-level path API).
 *
 * Why our own instead of fuse-native (libfuse 2): there, every request, including
 * the LOOKUP the kernel sends for each entry `ls -l` stats, travels from a libfuse
 * thread to the JavaScript thread and back, one after the other: 30,000 round
 * trips for an `ls -lR` of 30,000 files. Here a listing answered by JavaScript
 * carries the attributes of its entries, and they go to the kernel with the
 * listing (READDIRPLUS, which libfuse 2 cannot send), so the stats that follow
 * cost no request at all (docs/MOUNT.md, "The FUSE binding").
 *
 * Every other request is passed to one JavaScript dispatcher through a
 * thread-safe function; the libfuse thread waits until JavaScript replies,
 * except for open and release, answered here (op_open). The
 * wait cannot be cancelled: libfuse cancels its idle threads when the loop ends,
 * and a request whose buffers JavaScript still writes into must outlive that.
 */
#define FUSE_USE_VERSION 314
#define _FILE_OFFSET_BITS 64
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <fuse.h>
#include <math.h>
#include <node_api.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum op { OP_GETATTR = 1, OP_READDIR, OP_READLINK, OP_OPEN, OP_READ, OP_RELEASE, OP_STATFS, OP_GETXATTR, OP_LISTXATTR };
enum event { EV_INIT = 1, EV_EXIT };

/* Attribute fields as JavaScript sends them (a Float64Array), in this order. */
/* A_XATTRS: 1 if the entry has extended attributes, else 0 (see "paths without extended attributes"). */
enum { A_MODE, A_UID, A_GID, A_SIZE, A_NLINK, A_INO, A_RDEV, A_BLOCKS, A_BLKSIZE, A_ATIME, A_MTIME, A_CTIME, A_XATTRS, A_FIELDS };
enum { S_BSIZE, S_FRSIZE, S_BLOCKS, S_BFREE, S_BAVAIL, S_FILES, S_FFREE, S_FAVAIL, S_FSID, S_FLAG, S_NAMEMAX, S_FIELDS };

typedef struct request {
  int op;
  const char *path;
  const char *xattr_name; /* getxattr */
  uint64_t fh;
  size_t size;
  off_t offset;
  int flags;
  char *buf;
  struct listing *listing; /* readdir: filled by replyDir */
  struct stat *st;
  struct statvfs *sv;
  struct session *session;
  int result;
  int replied;
  /* Nobody waits for the answer (an open, a release): the reply frees it, with its copy of the path. */
  int detached;
  char *owned_path;
  sem_t done;
} request_t;

/*
 * A directory's listing, held from opendir to releasedir: JavaScript lists the
 * directory once, and the kernel's READDIR(PLUS) requests, each a few KiB, take
 * it from here with offsets (libfuse's offset mode, the only one in which it
 * sends the attributes with the names).
 */
typedef struct listing {
  size_t count;
  char **names;      /* the stored bytes */
  struct stat *st;   /* full attributes where has_attr, else type and inode only */
  unsigned char *has_attr;
  int loaded;
} listing_t;

static void listing_clear(listing_t *l) {
  for (size_t i = 0; i < l->count; i++) free(l->names[i]);
  free(l->names);
  free(l->st);
  free(l->has_attr);
  memset(l, 0, sizeof(*l));
}

/*
 * Paths without extended attributes, by a 64-bit hash of their bytes. `ls -l`
 * asks for an ACL (a getxattr) of every entry it shows; one round trip to
 * JavaScript each would add seconds to an `ls -lR` of 30,000 files. The
 * attributes JavaScript sends (replyAttr, replyDir) say whether an entry has
 * any; those that have none are remembered here and their getxattr and
 * listxattr requests answered at once. A path's answer holds for the mount's
 * life: snapshots never change, and a snapshot's name never passes to another
 * while mounted (mount/snapshots-dir.ts, leafFor). Bounded: at 2^21 slots
 * (16 MiB) and half full, it starts over.
 */
typedef struct hintset {
  uint64_t *slots;
  size_t cap, used;
  pthread_mutex_t lock;
} hintset_t;

#define HINT_MIN_CAP ((size_t)1 << 12)
#define HINT_MAX_CAP ((size_t)1 << 21)

static uint64_t fnv_add(uint64_t h, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 0x100000001b3ULL;
  return h;
}

#define FNV_START 0xcbf29ce484222325ULL

/* The hash of dir + "/" + name, equal to that of the joined path itself. */
static uint64_t path_hash(const char *dir, const char *name) {
  uint64_t h = fnv_add(FNV_START, dir, strlen(dir));
  if (name) {
    if (!(dir[0] == '/' && dir[1] == 0)) h = fnv_add(h, "/", 1);
    h = fnv_add(h, name, strlen(name));
  }
  return h ? h : 1; /* 0 marks an empty slot */
}

static void hint_insert_locked(hintset_t *hs, uint64_t h) {
  for (size_t i = h & (hs->cap - 1);; i = (i + 1) & (hs->cap - 1)) {
    if (hs->slots[i] == h) return;
    if (hs->slots[i] == 0) {
      hs->slots[i] = h;
      hs->used++;
      return;
    }
  }
}

static void hint_add(hintset_t *hs, uint64_t h) {
  pthread_mutex_lock(&hs->lock);
  if (!hs->slots || (hs->used + 1) * 2 > hs->cap) {
    size_t cap = hs->slots ? hs->cap * 2 : HINT_MIN_CAP;
    if (cap > HINT_MAX_CAP) {
      memset(hs->slots, 0, hs->cap * sizeof(uint64_t));
      hs->used = 0;
    } else {
      uint64_t *old = hs->slots;
      size_t old_cap = hs->cap;
      uint64_t *fresh = calloc(cap, sizeof(uint64_t));
      if (!fresh) {
        pthread_mutex_unlock(&hs->lock);
        return;
      }
      hs->slots = fresh;
      hs->cap = cap;
      hs->used = 0;
      for (size_t i = 0; i < old_cap; i++)
        if (old[i]) hint_insert_locked(hs, old[i]);
      free(old);
    }
  }
  hint_insert_locked(hs, h);
  pthread_mutex_unlock(&hs->lock);
}

static int hint_has(hintset_t *hs, uint64_t h) {
  int found = 0;
  pthread_mutex_lock(&hs->lock);
  if (hs->slots) {
    for (size_t i = h & (hs->cap - 1); hs->slots[i] != 0; i = (i + 1) & (hs->cap - 1)) {
      if (hs->slots[i] == h) {
        found = 1;
        break;
      }
    }
  }
  pthread_mutex_unlock(&hs->lock);
  return found;
}

/* Forget every path (under the lock: a libfuse thread may be looking one up). */
static void hint_clear(hintset_t *hs) {
  pthread_mutex_lock(&hs->lock);
  free(hs->slots);
  hs->slots = NULL;
  hs->cap = hs->used = 0;
  pthread_mutex_unlock(&hs->lock);
}

typedef struct session {
  struct fuse *fuse;
  char *mnt;
  pthread_t thread;
  napi_threadsafe_function call;
  napi_threadsafe_function events;
  unsigned max_readahead;
  /* Held by an invalidation while it uses `fuse`, and by the loop thread while it destroys it. */
  pthread_mutex_t lock;
  /* Owners: the JavaScript handle, the loop thread and each pending invalidation; the last one frees it. */
  int owners;
  /* The last file handle given out (op_open). */
  uint64_t next_fh;
  hintset_t bare;
  /*
   * How JavaScript answered its first extended-attribute request. Until then
   * every such request goes to it. Shown: `bare` may answer for it. None (its
   * ENOSYS: no snapshot has any): the kernel keeps that answer and asks no
   * more, so `bare` is dropped and no longer filled.
   */
  int xattrs;
} session_t;

enum { XATTRS_UNKNOWN, XATTRS_SHOWN, XATTRS_NONE };

/* ---- requests to JavaScript ---- */

static session_t *current(void) {
  return (session_t *)fuse_get_context()->private_data;
}

static int to_js(session_t *s, request_t *r) {
  int old;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
  r->session = s;
  r->result = -EIO;
  r->replied = 0;
  sem_init(&r->done, 0, 0);
  if (napi_call_threadsafe_function(s->call, r, napi_tsfn_blocking) == napi_ok) {
    while (sem_wait(&r->done) != 0 && errno == EINTR) {
    }
  }
  sem_destroy(&r->done);
  pthread_setcancelstate(old, NULL);
  return r->result;
}

static int op_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
  (void)fi;
  request_t r = {.op = OP_GETATTR, .path = path, .st = st};
  return to_js(current(), &r);
}

static int op_opendir(const char *path, struct fuse_file_info *fi) {
  (void)path;
  listing_t *l = calloc(1, sizeof(listing_t));
  if (!l) return -ENOMEM;
  fi->fh = (uint64_t)(uintptr_t)l;
  return 0;
}

static int op_releasedir(const char *path, struct fuse_file_info *fi) {
  (void)path;
  listing_t *l = (listing_t *)(uintptr_t)fi->fh;
  if (l) {
    listing_clear(l);
    free(l);
  }
  return 0;
}

static int op_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t offset, struct fuse_file_info *fi, enum fuse_readdir_flags flags) {
  listing_t *l = (listing_t *)(uintptr_t)fi->fh;
  if (!l) return -EIO;
  /* Offset 0: the first read, or a rewind; list afresh (snapshots come and go). */
  if (offset == 0 || !l->loaded) {
    listing_clear(l);
    request_t r = {.op = OP_READDIR, .path = path, .listing = l};
    int res = to_js(current(), &r);
    if (res != 0) return res;
    l->loaded = 1;
  }
  for (size_t i = (size_t)(offset < 0 ? 0 : offset); i < l->count; i++) {
    if (filler(buf, l->names[i], &l->st[i], (off_t)(i + 1), l->has_attr[i] ? FUSE_FILL_DIR_PLUS : 0)) break;
  }
  return 0;
}

static int op_readlink(const char *path, char *buf, size_t size) {
  request_t r = {.op = OP_READLINK, .path = path, .buf = buf, .size = size};
  return to_js(current(), &r);
}

/* Tell JavaScript without waiting for it (a release, an open): the reply frees the request. */
static void to_js_detached(session_t *s, int op, const char *path, uint64_t fh, int flags) {
  request_t *r = calloc(1, sizeof(request_t));
  if (!r) return;
  r->op = op;
  r->fh = fh;
  r->flags = flags;
  r->detached = 1;
  r->owned_path = path ? strdup(path) : NULL;
  r->path = r->owned_path;
  r->session = s;
  r->result = -EIO;
  if (napi_call_threadsafe_function(s->call, r, napi_tsfn_nonblocking) != napi_ok) {
    free(r->owned_path);
    free(r);
  }
}

/*
 * Opening a file is answered here, with a handle number of ours, and JavaScript
 * is told without the libfuse thread waiting for it: a program reading many
 * small files waited a round trip to JavaScript for every open (~130 µs here).
 * Nothing JavaScript could say would change the answer: the mount is read-only
 * (the kernel refuses writes itself; this check is for completeness), the
 * kernel opens only what a lookup found, and never a directory or a special
 * file this way. Requests reach JavaScript through one queue, in order, so it
 * learns of the handle before the first read on it.
 */
static int op_open(const char *path, struct fuse_file_info *fi) {
  if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) return -EROFS;
  session_t *s = current();
  fi->fh = __atomic_add_fetch(&s->next_fh, 1, __ATOMIC_RELAXED);
  to_js_detached(s, OP_OPEN, path, fi->fh, fi->flags);
  return 0;
}

static int op_read(const char *path, char *buf, size_t size, off_t offset, struct fuse_file_info *fi) {
  request_t r = {.op = OP_READ, .path = path, .buf = buf, .size = size, .offset = offset, .fh = fi->fh};
  return to_js(current(), &r);
}

/* Nothing a release answers can reach anyone (close(2) has returned). */
static int op_release(const char *path, struct fuse_file_info *fi) {
  to_js_detached(current(), OP_RELEASE, path, fi->fh, 0);
  return 0;
}

static int xattrs_state(session_t *s) {
  return __atomic_load_n(&s->xattrs, __ATOMIC_ACQUIRE);
}

static int xattrs_hinted(session_t *s, const char *path) {
  return xattrs_state(s) == XATTRS_SHOWN && hint_has(&s->bare, path_hash(path, NULL));
}

/* An entry JavaScript said has no extended attributes (replyAttr, replyDir). */
static void remember_bare(session_t *s, uint64_t hash) {
  if (xattrs_state(s) != XATTRS_NONE) hint_add(&s->bare, hash);
}

static void note_xattr_reply(request_t *r, int result) {
  if (r->op != OP_GETXATTR && r->op != OP_LISTXATTR) return;
  session_t *s = r->session;
  int none = result == -ENOSYS;
  __atomic_store_n(&s->xattrs, none ? XATTRS_NONE : XATTRS_SHOWN, __ATOMIC_RELEASE);
  if (none) hint_clear(&s->bare);
}

static int op_getxattr(const char *path, const char *name, char *value, size_t size) {
  session_t *s = current();
  if (xattrs_hinted(s, path)) return -ENODATA;
  request_t r = {.op = OP_GETXATTR, .path = path, .xattr_name = name, .buf = value, .size = size};
  return to_js(s, &r);
}

static int op_listxattr(const char *path, char *list, size_t size) {
  session_t *s = current();
  if (xattrs_hinted(s, path)) return 0;
  request_t r = {.op = OP_LISTXATTR, .path = path, .buf = list, .size = size};
  return to_js(s, &r);
}

static int op_statfs(const char *path, struct statvfs *sv) {
  request_t r = {.op = OP_STATFS, .path = path, .sv = sv};
  return to_js(current(), &r);
}

static void *op_init(struct fuse_conn_info *conn, struct fuse_config *cfg) {
  session_t *s = current();
  /* Our inode numbers, not libfuse's (hardlinks show as one inode). libfuse 3
     takes neither this nor max_readahead as an option: both are set here. */
  cfg->use_ino = 1;
  if (s->max_readahead) conn->max_readahead = s->max_readahead;
  /* Always READDIRPLUS, not only for a directory's first chunk: every entry we
     list comes with its attributes, so no chunk should cost a lookup per name. */
  conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
  /* Symlink targets stay in the kernel's page cache: without it every path
     through snapshots/latest cost a READLINK round trip to JavaScript, two per
     entry for an `ls -l` there. Targets never change but those of the made-up
     `latest` links, and JavaScript invalidates those (invalidate() below). */
  if (conn->capable & FUSE_CAP_CACHE_SYMLINKS) conn->want |= FUSE_CAP_CACHE_SYMLINKS;
  napi_call_threadsafe_function(s->events, (void *)(intptr_t)EV_INIT, napi_tsfn_nonblocking);
  return s;
}

/* The mount is also mounted "ro", so the kernel refuses writes before they get here. */
static int rofs(void) { return -EROFS; }
static int op_write(const char *p, const char *b, size_t n, off_t o, struct fuse_file_info *fi) {
  (void)p, (void)b, (void)n, (void)o, (void)fi;
  return rofs();
}
static int op_create(const char *p, mode_t m, struct fuse_file_info *fi) {
  (void)p, (void)m, (void)fi;
  return rofs();
}
static int op_path(const char *p) {
  (void)p;
  return rofs();
}
static int op_two_paths(const char *a, const char *b) {
  (void)a, (void)b;
  return rofs();
}
static int op_rename(const char *a, const char *b, unsigned int flags) {
  (void)a, (void)b, (void)flags;
  return rofs();
}
static int op_mode(const char *p, mode_t m) {
  (void)p, (void)m;
  return rofs();
}
static int op_chmod(const char *p, mode_t m, struct fuse_file_info *fi) {
  (void)p, (void)m, (void)fi;
  return rofs();
}
static int op_mknod(const char *p, mode_t m, dev_t d) {
  (void)p, (void)m, (void)d;
  return rofs();
}
static int op_chown(const char *p, uid_t u, gid_t g, struct fuse_file_info *fi) {
  (void)p, (void)u, (void)g, (void)fi;
  return rofs();
}
static int op_truncate(const char *p, off_t o, struct fuse_file_info *fi) {
  (void)p, (void)o, (void)fi;
  return rofs();
}
static int op_utimens(const char *p, const struct timespec tv[2], struct fuse_file_info *fi) {
  (void)p, (void)tv, (void)fi;
  return rofs();
}
static int op_setxattr(const char *p, const char *n, const char *v, size_t s, int f) {
  (void)p, (void)n, (void)v, (void)s, (void)f;
  return rofs();
}
static int op_removexattr(const char *p, const char *n) {
  (void)p, (void)n;
  return rofs();
}

static const struct fuse_operations operations = {
    .getattr = op_getattr,
    .readlink = op_readlink,
    .mknod = op_mknod,
    .mkdir = op_mode,
    .unlink = op_path,
    .rmdir = op_path,
    .symlink = op_two_paths,
    .rename = op_rename,
    .link = op_two_paths,
    .chmod = op_chmod,
    .chown = op_chown,
    .truncate = op_truncate,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    .statfs = op_statfs,
    .release = op_release,
    .setxattr = op_setxattr,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .removexattr = op_removexattr,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .releasedir = op_releasedir,
    .init = op_init,
    .create = op_create,
    .utimens = op_utimens,
};

/* ---- names: bytes in the kernel, strings in JavaScript ----
 *
 * A file name is bytes; a JavaScript string can only become valid UTF-8. The
 * mount's JavaScript side shows names as mount/names.ts maps them: valid UTF-8
 * unchanged, every other byte 0x80-0xff as U+EF80 + (byte - 0x80), and a
 * character already in U+EF80-U+EFFF escaped byte by byte. Here, at the kernel
 * boundary, that mapping is undone and redone, so the names the kernel sees are
 * the stored bytes exactly.
 */

#define ESC_FIRST 0xEF80u
#define ESC_LAST 0xEFFFu

/* Length of the valid UTF-8 sequence at s[i] (strict: no overlong forms, no surrogates), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t i, size_t n, uint32_t *cp) {
  unsigned c = s[i];
  size_t len;
  uint32_t min, v;
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  if (c >= 0xc2 && c <= 0xdf) len = 2, min = 0x80, v = c & 0x1f;
  else if (c >= 0xe0 && c <= 0xef) len = 3, min = 0x800, v = c & 0x0f;
  else if (c >= 0xf0 && c <= 0xf4) len = 4, min = 0x10000, v = c & 0x07;
  else return 0;
  if (i + len > n) return 0;
  for (size_t k = 1; k < len; k++) {
    unsigned d = s[i + k];
    if ((d & 0xc0) != 0x80) return 0;
    v = (v << 6) | (d & 0x3f);
  }
  if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
  *cp = v;
  return len;
}

static void put_escape(char *out, size_t *o, unsigned char b) {
  uint32_t cp = ESC_FIRST + (b - 0x80);
  out[(*o)++] = (char)(0xe0 | (cp >> 12));
  out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
  out[(*o)++] = (char)(0x80 | (cp & 0x3f));
}

/* Kernel bytes → the UTF-8 of the string JavaScript shows. The result is malloc'd (NULL: no memory). */
static char *bytes_to_shown(const char *in, size_t *outlen) {
  const unsigned char *s = (const unsigned char *)in;
  size_t n = strlen(in), o = 0;
  char *out = malloc(n * 3 + 1);
  if (!out) return NULL;
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    size_t len = utf8_seq(s, i, n, &cp);
    if (len == 0) {
      put_escape(out, &o, s[i]);
      i++;
    } else if (cp >= ESC_FIRST && cp <= ESC_LAST) {
      for (size_t k = 0; k < len; k++) put_escape(out, &o, s[i + k]);
      i += len;
    } else {
      memcpy(out + o, s + i, len);
      o += len;
      i += len;
    }
  }
  out[o] = 0;
  *outlen = o;
  return out;
}

/* The UTF-8 of a shown string → the bytes it stands for, in place; returns the new length. */
static size_t shown_to_bytes(char *buf, size_t n) {
  unsigned char *s = (unsigned char *)buf;
  size_t o = 0;
  for (size_t i = 0; i < n;) {
    /* U+EF80-U+EFFF is EE BE 80 … EE BF BF. */
    if (i + 2 < n && s[i] == 0xee && (s[i + 1] == 0xbe || s[i + 1] == 0xbf) && (s[i + 2] & 0xc0) == 0x80) {
      uint32_t cp = ((uint32_t)(s[i] & 0x0f) << 12) | ((uint32_t)(s[i + 1] & 0x3f) << 6) | (s[i + 2] & 0x3f);
      s[o++] = (unsigned char)(cp - ESC_FIRST + 0x80);
      i += 3;
    } else {
      s[o++] = s[i++];
    }
  }
  s[o] = 0;
  return o;
}

/* A JavaScript string as the bytes it shows, into buf (NUL-terminated); 0 if it does not fit. */
static int shown_string(napi_env env, napi_value v, char *buf, size_t cap, size_t *len) {
  size_t n;
  if (napi_get_value_string_utf8(env, v, buf, cap, &n) != napi_ok) return 0;
  if (n >= cap - 1) {
    /* Maybe cut short: ask for the full length to be sure. */
    size_t full;
    if (napi_get_value_string_utf8(env, v, NULL, 0, &full) != napi_ok || full >= cap) return 0;
  }
  *len = shown_to_bytes(buf, n);
  return 1;
}

/* ---- the JavaScript side of a request ---- */

#define CHECK(env, call)                                                   \
  do {                                                                     \
    if ((call) != napi_ok) {                                               \
      napi_throw_error((env), NULL, "aegis_fuse: " #call " failed");       \
      return NULL;                                                         \
    }                                                                      \
  } while (0)

static void finish(request_t *r, int result);

static void call_js(napi_env env, napi_value js_cb, void *context, void *data) {
  (void)context;
  request_t *r = data;
  if (env == NULL) {
    finish(r, -EIO);
    return;
  }
  napi_value argv[7], undefined, ext, result;
  napi_get_undefined(env, &undefined);
  napi_create_int32(env, r->op, &argv[0]);
  napi_create_external(env, r, NULL, NULL, &ext);
  argv[1] = ext;
  size_t plen;
  char *shown = bytes_to_shown(r->path ? r->path : "", &plen);
  if (!shown) {
    finish(r, -ENOMEM);
    return;
  }
  napi_create_string_utf8(env, shown, plen, &argv[2]);
  free(shown);
  napi_create_double(env, (double)r->fh, &argv[3]);
  napi_create_double(env, (double)r->size, &argv[4]);
  napi_create_double(env, r->op == OP_OPEN ? (double)r->flags : (double)r->offset, &argv[5]);
  argv[6] = undefined;
  if (r->op == OP_READ && napi_create_external_buffer(env, r->size, r->buf, NULL, NULL, &argv[6]) != napi_ok) {
    finish(r, -EIO);
    return;
  }
  /* The attribute's name, as the bytes the kernel gave. */
  if (r->op == OP_GETXATTR && napi_create_buffer_copy(env, strlen(r->xattr_name), r->xattr_name, NULL, &argv[6]) != napi_ok) {
    finish(r, -EIO);
    return;
  }
  /* The dispatcher (mount/fuse.ts) catches everything and replies exactly once;
     after its reply `r` may be gone, so nothing here touches it again. */
  if (napi_call_function(env, undefined, js_cb, 7, argv, &result) != napi_ok) {
    napi_value exc;
    napi_get_and_clear_last_exception(env, &exc);
  }
}

static void event_js(napi_env env, napi_value js_cb, void *context, void *data) {
  (void)context;
  if (env == NULL) return;
  napi_value undefined, argv[1], result;
  napi_get_undefined(env, &undefined);
  napi_create_int32(env, (int32_t)(intptr_t)data, &argv[0]);
  if (napi_call_function(env, undefined, js_cb, 1, argv, &result) != napi_ok) {
    napi_value exc;
    napi_get_and_clear_last_exception(env, &exc);
  }
}

static request_t *request_arg(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || !p) return NULL;
  request_t *r = p;
  return r->replied ? NULL : r;
}

static void finish(request_t *r, int result) {
  if (r->detached) {
    free(r->owned_path);
    free(r);
    return;
  }
  r->result = result;
  r->replied = 1;
  sem_post(&r->done);
}

static void ms_to_timespec(double ms, struct timespec *ts) {
  double sec = floor(ms / 1000);
  ts->tv_sec = (time_t)sec;
  ts->tv_nsec = (long)llround((ms - sec * 1000) * 1e6);
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

static void fill_stat(const double *a, struct stat *st) {
  memset(st, 0, sizeof(*st));
  st->st_mode = (mode_t)a[A_MODE];
  st->st_uid = (uid_t)a[A_UID];
  st->st_gid = (gid_t)a[A_GID];
  st->st_size = (off_t)a[A_SIZE];
  st->st_nlink = (nlink_t)a[A_NLINK];
  st->st_ino = (ino_t)a[A_INO];
  st->st_rdev = (dev_t)a[A_RDEV];
  st->st_blocks = (blkcnt_t)a[A_BLOCKS];
  st->st_blksize = (blksize_t)a[A_BLKSIZE];
  ms_to_timespec(a[A_ATIME], &st->st_atim);
  ms_to_timespec(a[A_MTIME], &st->st_mtim);
  ms_to_timespec(a[A_CTIME], &st->st_ctim);
}

static int float64_array(napi_env env, napi_value v, double **data, size_t *length) {
  napi_typedarray_type type;
  napi_value ab;
  size_t offset;
  if (napi_get_typedarray_info(env, v, &type, length, (void **)data, &ab, &offset) != napi_ok) return 0;
  return type == napi_float64_array;
}

/*
 * The request a reply call names in its first argument, with its first `argc`
 * arguments in argv (those not passed read as undefined); NULL if it is not a
 * pending request (an exception is pending if the arguments could not be read).
 */
static request_t *reply_args(napi_env env, napi_callback_info info, size_t argc, napi_value *argv) {
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    napi_throw_error(env, NULL, "aegis_fuse: cannot read the arguments of a reply");
    return NULL;
  }
  return request_arg(env, argv[0]);
}

/* reply(req, result): read (bytes), release, or any error. */
static napi_value Reply(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t result;
  request_t *r = reply_args(env, info, 2, argv);
  if (!r) return NULL;
  CHECK(env, napi_get_value_int32(env, argv[1], &result));
  note_xattr_reply(r, result);
  finish(r, result);
  return NULL;
}

/*
 * The request and numbers of a reply(req, Float64Array) call, or NULL (the
 * request, if any, then answered EIO and a TypeError thrown).
 */
static request_t *numbers_reply(napi_env env, napi_callback_info info, size_t want, double **a, const char *what) {
  size_t n;
  napi_value argv[2];
  request_t *r = reply_args(env, info, 2, argv);
  if (!r) return NULL;
  if (!float64_array(env, argv[1], a, &n) || n < want) {
    finish(r, -EIO);
    napi_throw_type_error(env, NULL, what);
    return NULL;
  }
  return r;
}

/* replyAttr(req, Float64Array(A_FIELDS)) */
static napi_value ReplyAttr(napi_env env, napi_callback_info info) {
  double *a;
  request_t *r = numbers_reply(env, info, A_FIELDS, &a, "replyAttr: expected a Float64Array of attributes");
  if (!r) return NULL;
  fill_stat(a, r->st);
  if (a[A_XATTRS] == 0) remember_bare(r->session, path_hash(r->path, NULL));
  finish(r, 0);
  return NULL;
}

/*
 * replyBytes(req, Buffer): a getxattr's value or a listxattr's names. Asked
 * with size 0, the length; too long for the buffer given, ERANGE.
 */
static napi_value ReplyBytes(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  void *data;
  size_t len;
  request_t *r = reply_args(env, info, 2, argv);
  if (!r) return NULL;
  if (napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok) {
    finish(r, -EIO);
    napi_throw_type_error(env, NULL, "replyBytes: expected a Buffer");
    return NULL;
  }
  note_xattr_reply(r, 0);
  if (len > INT32_MAX) finish(r, -E2BIG);
  else if (r->size == 0) finish(r, (int)len);
  else if (len > r->size) finish(r, -ERANGE);
  else {
    memcpy(r->buf, data, len);
    finish(r, (int)len);
  }
  return NULL;
}

/* replyStatfs(req, Float64Array(S_FIELDS)) */
static napi_value ReplyStatfs(napi_env env, napi_callback_info info) {
  double *a;
  request_t *r = numbers_reply(env, info, S_FIELDS, &a, "replyStatfs: expected a Float64Array");
  if (!r) return NULL;
  struct statvfs *sv = r->sv;
  memset(sv, 0, sizeof(*sv));
  sv->f_bsize = (unsigned long)a[S_BSIZE];
  sv->f_frsize = (unsigned long)a[S_FRSIZE];
  sv->f_blocks = (fsblkcnt_t)a[S_BLOCKS];
  sv->f_bfree = (fsblkcnt_t)a[S_BFREE];
  sv->f_bavail = (fsblkcnt_t)a[S_BAVAIL];
  sv->f_files = (fsfilcnt_t)a[S_FILES];
  sv->f_ffree = (fsfilcnt_t)a[S_FFREE];
  sv->f_favail = (fsfilcnt_t)a[S_FAVAIL];
  sv->f_fsid = (unsigned long)a[S_FSID];
  sv->f_flag = (unsigned long)a[S_FLAG];
  sv->f_namemax = (unsigned long)a[S_NAMEMAX];
  finish(r, 0);
  return NULL;
}

/* replyLink(req, target) */
static napi_value ReplyLink(napi_env env, napi_callback_info info) {
  size_t len;
  napi_value argv[2];
  request_t *r = reply_args(env, info, 2, argv);
  if (!r) return NULL;
  /* libfuse wants the target NUL-terminated and cut to the buffer, as readlink(2) would. */
  char *target = malloc(PATH_MAX * 3 + 1);
  if (r->size == 0 || !target || !shown_string(env, argv[1], target, PATH_MAX * 3 + 1, &len)) {
    free(target);
    finish(r, -EIO);
    return NULL;
  }
  size_t n = len < r->size - 1 ? len : r->size - 1;
  memcpy(r->buf, target, n);
  r->buf[n] = 0;
  free(target);
  finish(r, 0);
  return NULL;
}

/*
 * replyDir(req, names, modes, inos, attrs | null): the whole listing at once,
 * kept in the directory handle for the READDIRPLUS requests that take it in
 * pieces. attrs holds A_FIELDS numbers per name, NaN as the mode where there
 * are none (those entries go without attributes, and the kernel looks them up).
 */
static napi_value ReplyDir(napi_env env, napi_callback_info info) {
  size_t an = 0;
  napi_value argv[5];
  uint32_t count;
  double *attrs = NULL;
  request_t *r = reply_args(env, info, 5, argv);
  if (!r) return NULL;
  if (napi_get_array_length(env, argv[1], &count) != napi_ok) {
    finish(r, -EIO);
    napi_throw_type_error(env, NULL, "replyDir: names must be an array");
    return NULL;
  }
  napi_valuetype t;
  if (napi_typeof(env, argv[4], &t) == napi_ok && t == napi_object) {
    if (!float64_array(env, argv[4], &attrs, &an) || an < (size_t)count * A_FIELDS) attrs = NULL;
  }
  listing_t *l = r->listing;
  l->names = calloc(count ? count : 1, sizeof(char *));
  l->st = calloc(count ? count : 1, sizeof(struct stat));
  l->has_attr = calloc(count ? count : 1, 1);
  if (!l->names || !l->st || !l->has_attr) {
    listing_clear(l);
    finish(r, -ENOMEM);
    return NULL;
  }
  char name[1024];
  for (uint32_t i = 0; i < count; i++) {
    napi_value v;
    size_t len;
    double mode = 0, ino = 0;
    /* A name longer than any file system allows is left out. */
    if (napi_get_element(env, argv[1], i, &v) != napi_ok || !shown_string(env, v, name, sizeof(name), &len)) continue;
    if (napi_get_element(env, argv[2], i, &v) == napi_ok) napi_get_value_double(env, v, &mode);
    if (napi_get_element(env, argv[3], i, &v) == napi_ok) napi_get_value_double(env, v, &ino);
    size_t at = l->count;
    if (!(l->names[at] = strdup(name))) break;
    l->count++;
    struct stat *st = &l->st[at];
    int dot = (len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.');
    if (attrs && !dot && !isnan(attrs[(size_t)i * A_FIELDS + A_MODE])) {
      fill_stat(attrs + (size_t)i * A_FIELDS, st);
      l->has_attr[at] = 1;
      if (attrs[(size_t)i * A_FIELDS + A_XATTRS] == 0) remember_bare(r->session, path_hash(r->path, l->names[at]));
      continue;
    }
    st->st_mode = (mode_t)mode;
    st->st_ino = (ino_t)ino;
  }
  finish(r, 0);
  return NULL;
}

/* ---- mounting ---- */

static void session_free(session_t *s) {
  hint_clear(&s->bare);
  pthread_mutex_destroy(&s->bare.lock);
  pthread_mutex_destroy(&s->lock);
  free(s->mnt);
  free(s);
}

static void session_release(session_t *s) {
  if (__atomic_sub_fetch(&s->owners, 1, __ATOMIC_ACQ_REL) == 0) session_free(s);
}

static void *loop_thread(void *arg) {
  session_t *s = arg;
  /* Signals belong to Node's main thread; libfuse's workers inherit this mask. */
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  struct fuse_loop_config *config = fuse_loop_cfg_create();
  if (config) fuse_loop_cfg_set_idle_threads(config, 10);
  fuse_loop_mt(s->fuse, config);
  if (config) fuse_loop_cfg_destroy(config);
  /* fuse_unmount leaves alone a mount point the kernel already let go of. */
  pthread_mutex_lock(&s->lock);
  fuse_unmount(s->fuse);
  fuse_destroy(s->fuse);
  s->fuse = NULL;
  pthread_mutex_unlock(&s->lock);
  napi_call_threadsafe_function(s->events, (void *)(intptr_t)EV_EXIT, napi_tsfn_blocking);
  napi_release_threadsafe_function(s->call, napi_tsfn_release);
  napi_release_threadsafe_function(s->events, napi_tsfn_release);
  session_release(s);
  return NULL;
}

static void session_finalize(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  session_release(data);
}

static char *string_arg(napi_env env, napi_value v) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return NULL;
  char *out = malloc(len + 1);
  if (out && napi_get_value_string_utf8(env, v, out, len + 1, &len) != napi_ok) {
    free(out);
    return NULL;
  }
  return out;
}

/*
 * mount(mountpoint, "-o…", dispatch, onEvent, maxReadahead) → session.
 * Mounts at once (errors from libfuse go to stderr, as libfuse writes them);
 * onEvent(1) follows when the kernel's INIT arrives, onEvent(2) when the loop
 * has ended after an unmount.
 */
static napi_value Mount(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], name, result;
  double readahead;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5) {
    napi_throw_type_error(env, NULL, "mount(mountpoint, options, dispatch, onEvent, maxReadahead)");
    return NULL;
  }
  CHECK(env, napi_get_value_double(env, argv[4], &readahead));
  char *mnt = string_arg(env, argv[0]);
  char *opts = string_arg(env, argv[1]);
  if (!mnt || !opts) {
    free(mnt), free(opts);
    napi_throw_type_error(env, NULL, "mount: mountpoint and options must be strings");
    return NULL;
  }
  session_t *s = calloc(1, sizeof(session_t));
  pthread_mutex_init(&s->lock, NULL);
  pthread_mutex_init(&s->bare.lock, NULL);
  s->mnt = mnt;
  s->max_readahead = (unsigned)readahead;

  struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
  fuse_opt_add_arg(&args, "aegis");
  fuse_opt_add_arg(&args, opts);
  free(opts);
  s->fuse = fuse_new(&args, &operations, sizeof(operations), s);
  fuse_opt_free_args(&args);
  if (!s->fuse) {
    session_free(s);
    napi_throw_error(env, "EFUSEMOUNT", "libfuse refused the options (its message is above)");
    return NULL;
  }
  if (fuse_mount(s->fuse, mnt) != 0) {
    fuse_destroy(s->fuse);
    session_free(s);
    napi_throw_error(env, "EFUSEMOUNT", "libfuse could not mount (its message is above)");
    return NULL;
  }
  napi_create_string_utf8(env, "aegis fuse request", NAPI_AUTO_LENGTH, &name);
  CHECK(env, napi_create_threadsafe_function(env, argv[2], NULL, name, 0, 1, NULL, NULL, s, call_js, &s->call));
  napi_create_string_utf8(env, "aegis fuse event", NAPI_AUTO_LENGTH, &name);
  CHECK(env, napi_create_threadsafe_function(env, argv[3], NULL, name, 0, 1, NULL, NULL, s, event_js, &s->events));
  s->owners = 2;
  CHECK(env, napi_create_external(env, s, session_finalize, NULL, &result));
  if (pthread_create(&s->thread, NULL, loop_thread, s) != 0) {
    napi_throw_error(env, NULL, "aegis_fuse: cannot start the FUSE thread");
    return NULL;
  }
  pthread_detach(s->thread);
  return result;
}

/* ---- invalidating what the kernel cached ---- */

typedef struct invalidation {
  napi_async_work work;
  napi_deferred deferred;
  session_t *session;
  char **paths;
  uint32_t count;
} invalidation_t;

/*
 * On libuv's pool, never on the JavaScript thread: the kernel may wait for a
 * page that a request in flight holds (a READLINK of that very link), and that
 * request waits for JavaScript to answer it.
 */
static void invalidate_execute(napi_env env, void *data) {
  (void)env;
  invalidation_t *iv = data;
  pthread_mutex_lock(&iv->session->lock);
  /* -ENOENT: the kernel never looked the path up, so it has nothing cached. */
  if (iv->session->fuse)
    for (uint32_t i = 0; i < iv->count; i++) fuse_invalidate_path(iv->session->fuse, iv->paths[i]);
  pthread_mutex_unlock(&iv->session->lock);
}

static void invalidate_complete(napi_env env, napi_status status, void *data) {
  (void)status;
  invalidation_t *iv = data;
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  napi_resolve_deferred(env, iv->deferred, undefined);
  napi_delete_async_work(env, iv->work);
  for (uint32_t i = 0; i < iv->count; i++) free(iv->paths[i]);
  free(iv->paths);
  session_release(iv->session);
  free(iv);
}

/*
 * invalidate(session, paths) → Promise: the kernel forgets the attributes and
 * cached content (a symlink's target) of each path it knows, so the next
 * access asks again. Resolves once the kernel has been told.
 */
static napi_value Invalidate(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], promise, name;
  void *p = NULL;
  uint32_t count;
  bool is_array;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2 || napi_get_value_external(env, argv[0], &p) != napi_ok || !p || napi_is_array(env, argv[1], &is_array) != napi_ok || !is_array) {
    napi_throw_type_error(env, NULL, "invalidate(session, paths)");
    return NULL;
  }
  CHECK(env, napi_get_array_length(env, argv[1], &count));
  invalidation_t *iv = calloc(1, sizeof(invalidation_t));
  iv->paths = calloc(count ? count : 1, sizeof(char *));
  for (uint32_t i = 0; i < count; i++) {
    napi_value v;
    if (napi_get_element(env, argv[1], i, &v) != napi_ok || !(iv->paths[i] = string_arg(env, v))) {
      for (uint32_t j = 0; j < i; j++) free(iv->paths[j]);
      free(iv->paths);
      free(iv);
      napi_throw_type_error(env, NULL, "invalidate: paths must be strings");
      return NULL;
    }
  }
  iv->count = count;
  iv->session = p;
  __atomic_add_fetch(&iv->session->owners, 1, __ATOMIC_ACQ_REL);
  CHECK(env, napi_create_promise(env, &iv->deferred, &promise));
  napi_create_string_utf8(env, "aegis fuse invalidate", NAPI_AUTO_LENGTH, &name);
  CHECK(env, napi_create_async_work(env, NULL, name, invalidate_execute, invalidate_complete, iv, &iv->work));
  CHECK(env, napi_queue_async_work(env, iv->work));
  return promise;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"mount", NULL, Mount, NULL, NULL, NULL, napi_default, NULL},
      {"reply", NULL, Reply, NULL, NULL, NULL, napi_default, NULL},
      {"replyAttr", NULL, ReplyAttr, NULL, NULL, NULL, napi_default, NULL},
      {"replyStatfs", NULL, ReplyStatfs, NULL, NULL, NULL, napi_default, NULL},
      {"replyLink", NULL, ReplyLink, NULL, NULL, NULL, napi_default, NULL},
      {"replyDir", NULL, ReplyDir, NULL, NULL, NULL, napi_default, NULL},
      {"invalidate", NULL, Invalidate, NULL, NULL, NULL, napi_default, NULL},
      {"replyBytes", NULL, ReplyBytes, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)

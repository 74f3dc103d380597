;; Opens argv[1] relative to fd 3 (the first preopened directory), following symlinks, reads up
;; to 4 KiB and copies it to stdout, then exits 0. If the open or the read fails, it exits with
;; that errno and writes nothing.
(module
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)

  ;; argv[1] as (pointer, length): argc at 0, buffer size at 4, argv at 64, strings at 1024.
  ;; argv[1] is the last argument, so it runs to the end of the buffer, less its NUL.
  (func $arg1 (result i32 i32)
    (drop (call $args_sizes_get (i32.const 0) (i32.const 4)))
    (if (i32.ne (i32.load (i32.const 0)) (i32.const 2))
      (then (call $exit (i32.const 120))))
    (drop (call $args_get (i32.const 64) (i32.const 1024)))
    (i32.load (i32.const 68))
    (i32.sub
      (i32.sub (i32.add (i32.const 1024) (i32.load (i32.const 4))) (i32.load (i32.const 68)))
      (i32.const 1)))

  (func (export "_start") (local $len i32) (local $ptr i32) (local $err i32)
    (call $arg1)
    (local.set $len)
    (local.set $ptr)
    ;; lookupflags SYMLINK_FOLLOW, no oflags, rights FD_READ; the new fd at 200.
    (local.set $err
      (call $path_open (i32.const 3) (i32.const 1) (local.get $ptr) (local.get $len)
        (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 200)))
    (if (local.get $err) (then (call $exit (local.get $err))))
    ;; iovec { buf = 4096, len = 4096 } at 300; count at 400.
    (i32.store (i32.const 300) (i32.const 4096))
    (i32.store (i32.const 304) (i32.const 4096))
    (local.set $err
      (call $fd_read (i32.load (i32.const 200)) (i32.const 300) (i32.const 1) (i32.const 400)))
    (if (local.get $err) (then (call $exit (local.get $err))))
    (i32.store (i32.const 304) (i32.load (i32.const 400)))
    (drop (call $fd_write (i32.const 1) (i32.const 300) (i32.const 1) (i32.const 400)))
    (call $exit (i32.const 0))))

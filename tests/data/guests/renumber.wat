;; Moves descriptors around with `fd_renumber` to reach what it was not given. Writes one
;; errno byte per step to stderr (0: the step succeeded), then exits 99 if a step that must
;; fail succeeded, else 0. The mode is the first byte of argv[1]:
;;
;;   a  fd_renumber(1, 3): stdout replaces the preopen at fd 3. Steps:
;;        renumber; path_open(3, "in.txt"); path_open(3, "../secret.txt"); write "moved\n" to 3
;;      must fail: both opens (fd 3 is no longer a directory)
;;   b  fd_renumber(3, 1): the preopen replaces stdout at fd 1. Steps:
;;        renumber; write "ESCAPED\n" to 1; path_open(1, "../secret.txt"); path_open(1, "in.txt")
;;      must fail: the write (fd 1 is a directory) and the open of ../secret.txt
(module
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_renumber" (func $fd_renumber (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "in.txt")
  (data (i32.const 120) "../secret.txt")
  (data (i32.const 140) "moved\n")
  (data (i32.const 160) "ESCAPED\n")

  ;; The first byte of argv[1] (argc at 0, buffer size at 4, argv at 64, strings at 1024).
  (func $mode (result i32)
    (drop (call $args_sizes_get (i32.const 0) (i32.const 4)))
    (if (i32.ne (i32.load (i32.const 0)) (i32.const 2))
      (then (call $exit (i32.const 120))))
    (drop (call $args_get (i32.const 64) (i32.const 1024)))
    (i32.load8_u (i32.load (i32.const 68))))

  ;; Open `path` under `dir` for reading, following symlinks; the new fd goes to 500.
  (func $open (param $dir i32) (param $path i32) (param $len i32) (result i32)
    (call $path_open (local.get $dir) (i32.const 1) (local.get $path) (local.get $len)
      (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 500)))

  ;; Write `len` bytes at `buf` to `fd`; errno.
  (func $write (param $fd i32) (param $buf i32) (param $len i32) (result i32)
    (i32.store (i32.const 300) (local.get $buf))
    (i32.store (i32.const 304) (local.get $len))
    (call $fd_write (local.get $fd) (i32.const 300) (i32.const 1) (i32.const 308)))

  ;; Step `n` (0-based) ended with `errno`: its byte at 1000.
  (func $record (param $n i32) (param $errno i32) (result i32)
    (i32.store8 (i32.add (i32.const 1000) (local.get $n)) (local.get $errno))
    (local.get $errno))

  (func (export "_start") (local $mode i32) (local $escaped i32)
    (local.set $mode (call $mode))
    (if (i32.eq (local.get $mode) (i32.const 0x61))
      (then
        (drop (call $record (i32.const 0) (call $fd_renumber (i32.const 1) (i32.const 3))))
        (if (i32.eqz (call $record (i32.const 1)
              (call $open (i32.const 3) (i32.const 100) (i32.const 6))))
          (then (local.set $escaped (i32.const 1))))
        (if (i32.eqz (call $record (i32.const 2)
              (call $open (i32.const 3) (i32.const 120) (i32.const 13))))
          (then (local.set $escaped (i32.const 1))))
        (drop (call $record (i32.const 3)
          (call $write (i32.const 3) (i32.const 140) (i32.const 6))))))
    (if (i32.eq (local.get $mode) (i32.const 0x62))
      (then
        (drop (call $record (i32.const 0) (call $fd_renumber (i32.const 3) (i32.const 1))))
        (if (i32.eqz (call $record (i32.const 1)
              (call $write (i32.const 1) (i32.const 160) (i32.const 8))))
          (then (local.set $escaped (i32.const 1))))
        (if (i32.eqz (call $record (i32.const 2)
              (call $open (i32.const 1) (i32.const 120) (i32.const 13))))
          (then (local.set $escaped (i32.const 1))))
        (drop (call $record (i32.const 3)
          (call $open (i32.const 1) (i32.const 100) (i32.const 6))))))
    (drop (call $write (i32.const 2) (i32.const 1000) (i32.const 4)))
    (call $exit (select (i32.const 99) (i32.const 0) (local.get $escaped)))))

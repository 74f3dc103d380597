;; Tries every way WASI preview 1 offers to change a directory preopened at fd 3, which must be
;; read-only. Writes one byte per attempt to stdout: the errno it got (0: it succeeded), in this
;; order, then exits with the 1-based number of the first attempt that succeeded, 0 if none did:
;;
;;   1 open data.txt for writing, then write    7 unlink data.txt
;;   2 open data.txt for appending, then write  8 mkdir newdir
;;   3 open data.txt with O_TRUNC               9 rmdir sub (empty)
;;   4 create new.txt                           10 symlink sym.txt -> data.txt
;;   5 rename data.txt to renamed.txt           11 open data.txt, then set its size to 0
;;   6 hard-link data.txt as hardlink.txt       12 set data.txt's times to the epoch
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_set_size"
    (func $fd_filestat_set_size (param i32 i64) (result i32)))
  (import "wasi_snapshot_preview1" "path_rename"
    (func $path_rename (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_link"
    (func $path_link (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_unlink_file"
    (func $path_unlink_file (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_create_directory"
    (func $path_create_directory (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_remove_directory"
    (func $path_remove_directory (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_symlink"
    (func $path_symlink (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_filestat_set_times"
    (func $path_filestat_set_times (param i32 i32 i32 i32 i64 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "data.txt")
  (data (i32.const 120) "new.txt")
  (data (i32.const 140) "renamed.txt")
  (data (i32.const 160) "hardlink.txt")
  (data (i32.const 180) "newdir")
  (data (i32.const 200) "sym.txt")
  (data (i32.const 220) "sub")
  (data (i32.const 240) "PWNED")
  (global $first (mut i32) (i32.const 0))

  ;; Open `path` under fd 3 (no symlink following); the new fd goes to 500.
  (func $open (param $path i32) (param $len i32) (param $oflags i32) (param $rights i64)
      (param $fdflags i32) (result i32)
    (call $path_open (i32.const 3) (i32.const 0) (local.get $path) (local.get $len)
      (local.get $oflags) (local.get $rights) (i64.const 0) (local.get $fdflags) (i32.const 500)))

  ;; Write "PWNED" to the fd at 500; errno, or 0.
  (func $write_opened (result i32)
    (i32.store (i32.const 300) (i32.const 240))
    (i32.store (i32.const 304) (i32.const 5))
    (call $fd_write (i32.load (i32.const 500)) (i32.const 300) (i32.const 1) (i32.const 504)))

  ;; Close the fd at 500 when the open that made it succeeded.
  (func $close_if (param $errno i32)
    (if (i32.eqz (local.get $errno)) (then (drop (call $fd_close (i32.load (i32.const 500)))))))

  ;; Attempt `n` (1-based) ended with `errno`.
  (func $record (param $n i32) (param $errno i32)
    (i32.store8 (i32.add (i32.const 999) (local.get $n)) (local.get $errno))
    (if (i32.and (i32.eqz (local.get $errno)) (i32.eqz (global.get $first)))
      (then (global.set $first (local.get $n)))))

  (func (export "_start") (local $e i32)
    ;; 1: open for writing (rights FD_WRITE), then write.
    (local.set $e
      (call $open (i32.const 100) (i32.const 8) (i32.const 0) (i64.const 64) (i32.const 0)))
    (if (i32.eqz (local.get $e)) (then
      (local.set $e (call $write_opened))
      (call $close_if (i32.const 0))))
    (call $record (i32.const 1) (local.get $e))
    ;; 2: open for appending (FD_WRITE, fdflags APPEND), then write.
    (local.set $e
      (call $open (i32.const 100) (i32.const 8) (i32.const 0) (i64.const 64) (i32.const 1)))
    (if (i32.eqz (local.get $e)) (then
      (local.set $e (call $write_opened))
      (call $close_if (i32.const 0))))
    (call $record (i32.const 2) (local.get $e))
    ;; 3: O_TRUNC (oflags 8), rights FD_READ | FD_WRITE.
    (local.set $e
      (call $open (i32.const 100) (i32.const 8) (i32.const 8) (i64.const 66) (i32.const 0)))
    (call $close_if (local.get $e))
    (call $record (i32.const 3) (local.get $e))
    ;; 4: O_CREAT (oflags 1) of a new file.
    (local.set $e
      (call $open (i32.const 120) (i32.const 7) (i32.const 1) (i64.const 64) (i32.const 0)))
    (call $close_if (local.get $e))
    (call $record (i32.const 4) (local.get $e))
    ;; 5: rename.
    (call $record (i32.const 5)
      (call $path_rename (i32.const 3) (i32.const 100) (i32.const 8)
        (i32.const 3) (i32.const 140) (i32.const 11)))
    ;; 6: hard link.
    (call $record (i32.const 6)
      (call $path_link (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 8)
        (i32.const 3) (i32.const 160) (i32.const 12)))
    ;; 7: unlink.
    (call $record (i32.const 7)
      (call $path_unlink_file (i32.const 3) (i32.const 100) (i32.const 8)))
    ;; 8: mkdir.
    (call $record (i32.const 8)
      (call $path_create_directory (i32.const 3) (i32.const 180) (i32.const 6)))
    ;; 9: rmdir.
    (call $record (i32.const 9)
      (call $path_remove_directory (i32.const 3) (i32.const 220) (i32.const 3)))
    ;; 10: symlink.
    (call $record (i32.const 10)
      (call $path_symlink (i32.const 100) (i32.const 8)
        (i32.const 3) (i32.const 200) (i32.const 7)))
    ;; 11: open with FD_READ | FD_FILESTAT_SET_SIZE, then truncate to 0.
    (local.set $e
      (call $open (i32.const 100) (i32.const 8) (i32.const 0) (i64.const 4194306) (i32.const 0)))
    (if (i32.eqz (local.get $e)) (then
      (local.set $e (call $fd_filestat_set_size (i32.load (i32.const 500)) (i64.const 0)))
      (call $close_if (i32.const 0))))
    (call $record (i32.const 11) (local.get $e))
    ;; 12: set atime and mtime (fstflags ATIM | MTIM) to 0.
    (call $record (i32.const 12)
      (call $path_filestat_set_times (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 8)
        (i64.const 0) (i64.const 0) (i32.const 5)))
    ;; Report: the 12 errno bytes at 1000.
    (i32.store (i32.const 300) (i32.const 1000))
    (i32.store (i32.const 304) (i32.const 12))
    (drop (call $fd_write (i32.const 1) (i32.const 300) (i32.const 1) (i32.const 504)))
    (call $exit (global.get $first))))

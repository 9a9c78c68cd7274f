;; hello: prints /app/data/config.json from the package tree it runs in.
;;
;; A WASI preview1 command. The loaded tree is preopened as `/` (descriptor 3), so the file
;; the `data` volume holds, mounted at /app/data inside the `site` volume's /app, is read
;; through the nested mount. `cargo xtask wasm` compiles this file into hello.wasm (with
;; the `wat` crate); a test checks that the two match.
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit"
    (func $proc_exit (param i32)))

  (memory (export "memory") 1)

  ;; Memory: 0..8 an iovec {buf, len}; 8 the opened descriptor; 12 a byte count;
  ;; 64 the path; 96 and 160 the error messages; 1024.. the read buffer.
  (data (i32.const 64) "app/data/config.json")
  (data (i32.const 96) "hello: cannot open /app/data/config.json\n")
  (data (i32.const 160) "hello: cannot read /app/data/config.json\n")

  ;; Writes `len` bytes at `ptr` to `fd`, however many calls that takes; false on error.
  (func $write_all (param $fd i32) (param $ptr i32) (param $len i32) (result i32)
    (block $failed
      (loop $more
        (if (i32.eqz (local.get $len)) (then (return (i32.const 1))))
        (i32.store (i32.const 0) (local.get $ptr))
        (i32.store (i32.const 4) (local.get $len))
        (br_if $failed
          (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 12)))
        (local.set $ptr (i32.add (local.get $ptr) (i32.load (i32.const 12))))
        (local.set $len (i32.sub (local.get $len) (i32.load (i32.const 12))))
        (br $more)))
    (i32.const 0))

  ;; Says what failed on stderr and exits with `code`.
  (func $fail (param $message i32) (param $code i32)
    (drop (call $write_all (i32.const 2) (local.get $message) (i32.const 41)))
    (call $proc_exit (local.get $code)))

  (func (export "_start")
    (local $fd i32)
    (local $read i32)
    ;; path_open(preopen 3, follow symlinks, path, 20 bytes, no oflags, right fd_read,
    ;; no inherited rights, no fdflags, -> descriptor at 8)
    (if (call $path_open (i32.const 3) (i32.const 1) (i32.const 64) (i32.const 20)
                         (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0)
                         (i32.const 8))
      (then (call $fail (i32.const 96) (i32.const 1)) (unreachable)))
    (local.set $fd (i32.load (i32.const 8)))
    (loop $more
      (i32.store (i32.const 0) (i32.const 1024))
      (i32.store (i32.const 4) (i32.const 4096))
      (if (call $fd_read (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 12))
        (then (call $fail (i32.const 160) (i32.const 2)) (unreachable)))
      (local.set $read (i32.load (i32.const 12)))
      (if (local.get $read)
        (then
          (if (i32.eqz (call $write_all (i32.const 1) (i32.const 1024) (local.get $read)))
            (then (call $proc_exit (i32.const 3)) (unreachable)))
          (br $more))))
    (call $proc_exit (i32.const 0))))

;; Spins forever without calling the host: only the deadline (epoch) or fuel can stop it.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $spin
      (br $spin))))

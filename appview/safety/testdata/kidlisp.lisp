; spiral garden: a KidLisp sketch (a realistic ~2 KB source for tests and the bench)
; draw a slow spiral of petals, a ground line and a few blinking stars

(wipe navy)
(def cx (/ width 2))
(def cy (/ height 2))
(def petals 48)
(def radius 6)
(def speed 0.02)

; the ground: a soft gradient of boxes
(repeat 8 i
  (ink (? green lime darkgreen) (+ 64 (* i 16)))
  (box 0 (- height (* i 6)) width 6))

; the spiral itself
(repeat petals i
  (def a (+ (* i 0.35) (* frame speed)))
  (def d (* i 2.5))
  (def x (+ cx (* d (cos a))))
  (def y (+ cy (* d (sin a))))
  (ink (? red orange yellow pink magenta) 200)
  (circle x y (+ radius (% i 4)))
  (ink white 40)
  (line cx cy x y))

; blinking stars in the sky, positioned by a tiny hash of their index
(repeat 24 s
  (def sx (% (* s 97) width))
  (def sy (% (* s 53) (/ height 2)))
  (if (> (% (+ frame (* s 7)) 30) 15)
    (ink white)
    (ink gray 80))
  (plot sx sy)
  (plot (+ sx 1) sy)
  (plot sx (+ sy 1)))

; a label in the corner, with the frame count
(ink yellow)
(write "spiral garden" 6 6)
(write frame 6 18)

; a little creature that walks across the ground line and wraps around
(def walker (% (* frame 1.5) width))
(ink black)
(box walker (- height 20) 10 8)
(ink white)
(plot (+ walker 2) (- height 18))
(plot (+ walker 7) (- height 18))
(ink brown)
(line walker (- height 12) (- walker 2) (- height 8))
(line (+ walker 10) (- height 12) (+ walker 12) (- height 8))

; effects: a gentle scroll, a touch of blur, and a zoom on tap
(scroll 1 0)
(blur 1)
(tap (zoom 1.1))
(once (wipe navy))

; colours cycle every few seconds between palettes
(def palette (% (/ frame 120) 3))
(if (= palette 0) (ink cyan 30) (ink purple 30))
(box 0 0 width 4)
(box 0 (- height 4) width 4)

; a grid of dots that pulse with the frame count
(repeat 6 gx
  (repeat 4 gy
    (def px (+ 20 (* gx 24)))
    (def py (+ 40 (* gy 24)))
    (ink (? teal aqua skyblue) (+ 60 (% (* frame (+ gx gy)) 120)))
    (circle px py 3)))

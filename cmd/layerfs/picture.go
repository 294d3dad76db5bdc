package main

import (
	"fmt"
	"html"
	"io"
	"path"
	"sort"
	"strings"

	"github.com/layerfs/layerfs/unionfs"
)

// A picture is the figure people learn overlays from: the merged view on top, then one row
// per layer (upper first), one column per name, each cell saying what that layer holds for the
// name; the cell serving the name is marked and joined to the merged row by an arrow, what the
// view hides is grey.

// Limits beyond which a picture summarises instead of drawing everything: past a few dozen
// columns or a dozen rows nobody reads the figure.
const (
	pictureMaxNames  = 40
	pictureMaxLayers = 12
)

// picture is what is drawn.
type picture struct {
	Title  string
	Labels []string // row labels of the layers, topmost first
	Dirs   []string // their directories
	Cols   []pictureColumn
	// MoreNames and MoreLayers count what was left out.
	MoreNames, MoreLayers int
}

// pictureColumn is one merged name with what every layer holds for it.
type pictureColumn struct {
	Path   string // from the root of the view: "/etc/passwd"
	Origin unionfs.Origin
	Cells  []unionfs.Cell
}

// buildPicture gathers the names of the merged directory dir (relative, "" for the root) down
// to depth levels, and what each layer holds for each.
func buildPicture(ins *unionfs.Inspector, dir string, depth int, title string) (*picture, error) {
	p := &picture{Title: title}
	for i, d := range ins.Layers() {
		label := fmt.Sprintf("L%d", i)
		if i == 0 && ins.HasUpper() {
			label = "upper"
		}
		p.Labels = append(p.Labels, label)
		p.Dirs = append(p.Dirs, d)
	}
	if len(p.Labels) > pictureMaxLayers {
		p.MoreLayers = len(p.Labels) - pictureMaxLayers
		p.Labels, p.Dirs = p.Labels[:pictureMaxLayers], p.Dirs[:pictureMaxLayers]
	}
	var walk func(dir string, level int) error
	walk = func(dir string, level int) error {
		list, errno := ins.List(dir)
		if errno != 0 {
			return fmt.Errorf("%s: %v", displayPath(dir), errno)
		}
		sort.Slice(list, func(a, b int) bool { return list[a].Name < list[b].Name })
		for _, o := range list {
			rel := path.Join(dir, o.Name)
			cells, errno := ins.Cells(dir, o.Name)
			if errno != 0 {
				return fmt.Errorf("%s: %v", displayPath(rel), errno)
			}
			if len(cells) > len(p.Labels) {
				cells = cells[:len(p.Labels)]
			}
			p.Cols = append(p.Cols, pictureColumn{Path: "/" + rel, Origin: o, Cells: cells})
			if o.Type == "dir" && o.Status != "deleted" && level < depth {
				if err := walk(rel, level+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(dir, 1); err != nil {
		return nil, err
	}
	if len(p.Cols) > pictureMaxNames {
		p.MoreNames = len(p.Cols) - pictureMaxNames
		p.Cols = p.Cols[:pictureMaxNames]
	}
	return p, nil
}

// cellText says in a word or two what a layer holds.
func cellText(c unionfs.Cell) string {
	switch c.Kind {
	case "":
		if !c.Consulted {
			return "·"
		}
		return ""
	case "reg":
		return "file"
	case "dir":
		switch {
		case c.Redirect != "":
			return "dir → " + c.Redirect
		case c.Opaque:
			return "dir, opaque"
		}
		return "dir"
	case "chardev", "blockdev":
		return "device"
	}
	return c.Kind
}

// Colours of the figure: served (blue), merged directory part (light blue), whiteout (red),
// hidden (grey), nothing there (white), not consulted (hatched grey).
const (
	colServe    = "#cfe3ff"
	colServeRim = "#1d4ed8"
	colWhiteout = "#fde2e2"
	colHidden   = "#eeeeee"
	colText     = "#111827"
	colGrey     = "#9ca3af"
)

// writeSVG draws p as a self-contained SVG image.
func writeSVG(w io.Writer, p *picture) {
	const (
		labelW = 120
		cellW  = 118
		cellH  = 46
		gapY   = 18
		headH  = 56
		top    = 40
	)
	rows := 1 + len(p.Labels)
	width := labelW + max(1, len(p.Cols))*cellW + 20
	notes := p.notes()
	height := top + headH + rows*(cellH+gapY) + 70 + 18*len(notes)
	rowY := func(r int) int { return top + headH + r*(cellH+gapY) }
	colX := func(c int) int { return labelW + c*cellW }
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="DejaVu Sans, Verdana, sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(w, "<title>%s</title>\n", html.EscapeString(p.Title))
	fmt.Fprint(w, `<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="`+colServeRim+`"/></marker>`+
		`<pattern id="unseen" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#fafafa"/><line x1="0" y1="0" x2="0" y2="6" stroke="#e5e7eb" stroke-width="2"/></pattern></defs>`+"\n")
	fmt.Fprintf(w, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(w, `<text x="10" y="24" font-size="16" font-weight="bold" fill="%s">%s</text>`+"\n", colText, html.EscapeString(p.Title))

	// Column heads: the names, slanted so that long ones fit.
	for c, col := range p.Cols {
		x := colX(c) + cellW/2
		y := top + headH - 8
		name := col.Path
		if len(name) > 22 {
			name = "…" + name[len(name)-21:]
		}
		fmt.Fprintf(w, `<text x="%d" y="%d" transform="rotate(-20 %d %d)" text-anchor="middle" fill="%s"><title>%s</title>%s</text>`+"\n",
			x, y, x, y, colText, html.EscapeString(col.Path), html.EscapeString(name))
	}
	// Row labels.
	label := func(r int, text, sub string) {
		y := rowY(r)
		fmt.Fprintf(w, `<text x="10" y="%d" font-weight="bold" fill="%s">%s</text>`+"\n", y+20, colText, html.EscapeString(text))
		if sub != "" {
			short := sub
			if len(short) > 18 {
				short = "…" + short[len(short)-17:]
			}
			fmt.Fprintf(w, `<text x="10" y="%d" font-size="10" fill="%s"><title>%s</title>%s</text>`+"\n", y+36, colGrey, html.EscapeString(sub), html.EscapeString(short))
		}
	}
	label(0, "merged", "what programs see")
	for i, l := range p.Labels {
		label(i+1, l, p.Dirs[i])
	}
	fmt.Fprintf(w, `<line x1="8" x2="%d" y1="%d" y2="%d" stroke="#d1d5db" stroke-dasharray="4 3"/>`+"\n", width-8, rowY(1)-gapY/2, rowY(1)-gapY/2)

	box := func(c, r int, fill, stroke string, strokeW float64, text, textFill, tip string) {
		x, y := colX(c)+4, rowY(r)
		fmt.Fprintf(w, `<g><title>%s</title><rect x="%d" y="%d" width="%d" height="%d" rx="6" fill="%s" stroke="%s" stroke-width="%.1f"/>`,
			html.EscapeString(tip), x, y, cellW-8, cellH, fill, stroke, strokeW)
		if text != "" {
			if len(text) > 17 {
				text = text[:16] + "…"
			}
			fmt.Fprintf(w, `<text x="%d" y="%d" text-anchor="middle" fill="%s">%s</text>`, x+(cellW-8)/2, y+cellH/2+4, textFill, html.EscapeString(text))
		}
		fmt.Fprint(w, "</g>\n")
	}
	for c, col := range p.Cols {
		o := col.Origin
		serving := map[int]bool{}
		if o.Status != "deleted" {
			serving[o.Layer] = true
			for _, l := range o.Merged {
				serving[l] = true
			}
		}
		// The merged row.
		if o.Status == "deleted" {
			box(c, 0, "white", colGrey, 1, "(deleted)", colGrey, col.Path+": deleted by a whiteout in "+p.labelOf(o.Layer))
		} else {
			text := cellText(unionfs.Cell{Kind: o.Type, Consulted: true})
			if o.Status == "merged" {
				text = "dir, merged"
			}
			box(c, 0, "white", colText, 1.5, text, colText, col.Path+": "+o.Status+", served by "+p.labelOf(o.Layer))
		}
		for l, cell := range col.Cells {
			r := l + 1
			text := cellText(cell)
			tip := fmt.Sprintf("%s in %s (%s): %s", col.Path, p.Labels[l], p.Dirs[l], text)
			switch {
			case !cell.Consulted:
				box(c, r, "url(#unseen)", "#e5e7eb", 1, "", colGrey, col.Path+" in "+p.Labels[l]+": not reached (below an opaque directory, or no parent directory here)")
			case cell.Kind == "" && serving[l]:
				// Merged in under another name: a directory renamed with redirect_dir=on.
				box(c, r, colServe, colServeRim, 2.5, "(redirected)", colText, col.Path+" in "+p.Labels[l]+": merged in from another name, which the upper directory's redirect names")
			case cell.Kind == "":
				box(c, r, "white", "#e5e7eb", 1, "", colGrey, col.Path+" in "+p.Labels[l]+": nothing")
			case serving[l]:
				box(c, r, colServe, colServeRim, 2.5, text, colText, tip+" (serves the name)")
			case cell.Kind == "whiteout":
				box(c, r, colWhiteout, "#dc2626", 1.5, "whiteout", "#991b1b", tip+" (hides the name below)")
			default:
				box(c, r, colHidden, "#d1d5db", 1, text, colGrey, tip+" (hidden by a layer above)")
			}
		}
		// Arrows from the merged name down to what serves it.
		if o.Status != "deleted" {
			k := 0
			for l := range col.Cells {
				if !serving[l] {
					continue
				}
				x := colX(c) + cellW/2 - 10 + 8*k
				k++
				fmt.Fprintf(w, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="1.5" marker-start="url(#arrow)" opacity="0.8"/>`+"\n",
					x, rowY(0)+cellH+1, x, rowY(l+1)-1, colServeRim)
			}
		}
	}
	// Legend and notes.
	y := rowY(rows) + 6
	legend := []struct{ fill, stroke, text string }{
		{colServe, colServeRim, "serves the name"},
		{colWhiteout, "#dc2626", "whiteout: deletes the name below"},
		{colHidden, "#d1d5db", "hidden by a layer above"},
		{"url(#unseen)", "#e5e7eb", "not reached"},
	}
	x := 10
	for _, l := range legend {
		fmt.Fprintf(w, `<rect x="%d" y="%d" width="16" height="12" rx="3" fill="%s" stroke="%s"/><text x="%d" y="%d" fill="%s">%s</text>`+"\n",
			x, y, l.fill, l.stroke, x+22, y+10, colText, html.EscapeString(l.text))
		x += 40 + 7*len(l.text)
	}
	for i, n := range notes {
		fmt.Fprintf(w, `<text x="10" y="%d" fill="%s" font-style="italic">%s</text>`+"\n", y+36+18*i, colText, html.EscapeString(n))
	}
	fmt.Fprint(w, "</svg>\n")
}

// notes are the lines under the figure: what it leaves out.
func (p *picture) notes() []string {
	var n []string
	if len(p.Cols) == 0 {
		n = append(n, "The directory is empty in every layer.")
	}
	if p.MoreNames > 0 {
		n = append(n, fmt.Sprintf("… and %d more names, not drawn (layerfs inspect --json lists them all).", p.MoreNames))
	}
	if p.MoreLayers > 0 {
		n = append(n, fmt.Sprintf("… and %d more layers below, not drawn.", p.MoreLayers))
	}
	return n
}

func (p *picture) labelOf(l int) string {
	if l >= 0 && l < len(p.Labels) {
		return p.Labels[l]
	}
	return fmt.Sprintf("L%d", l)
}

// pageStyle is the style of the HTML pages (inspect --html, demo --html).
const pageStyle = `body{font-family:DejaVu Sans,Verdana,sans-serif;margin:2em;color:#111827;max-width:110em}
pre{background:#f3f4f6;padding:.6em 1em;border-radius:6px;overflow-x:auto}
.figure{overflow-x:auto;border:1px solid #e5e7eb;border-radius:8px;padding:.5em;margin:1em 0}
nav a{margin-right:1.5em} .why{font-size:110%;line-height:1.5}
td{padding:.1em 1em .1em 0}`

// writeHTML writes a self-contained page holding the figure of p and what its rows are.
func writeHTML(w io.Writer, p *picture) {
	fmt.Fprintf(w, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>%s</title><style>%s</style></head><body>\n", html.EscapeString(p.Title), pageStyle)
	fmt.Fprintf(w, "<h1>%s</h1>\n<div class=\"figure\">\n", html.EscapeString(p.Title))
	writeSVG(w, p)
	fmt.Fprint(w, "</div>\n<table>\n")
	for i, l := range p.Labels {
		fmt.Fprintf(w, "<tr><td><b>%s</b></td><td><code>%s</code></td></tr>\n", html.EscapeString(l), html.EscapeString(p.Dirs[i]))
	}
	fmt.Fprint(w, "</table>\n")
	for _, n := range p.notes() {
		fmt.Fprintf(w, "<p><i>%s</i></p>\n", html.EscapeString(n))
	}
	fmt.Fprint(w, "</body></html>\n")
}

// pictureTitle names a figure of the directory dir of the view.
func pictureTitle(dir string) string {
	return "layer stack: " + strings.TrimSuffix(displayPath(dir), "/") + "/"
}

package oauthlogin

import (
	"errors"
	"os/exec"
	"runtime"
)

// OpenBrowser opens url in the user's browser: open on macOS, the URL
// handler on Windows, xdg-open elsewhere. It returns once the opener has
// started; an error means the user must open the printed URL.
func OpenBrowser(url string) error {
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", url)
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", url)
	default:
		if _, err := exec.LookPath("xdg-open"); err != nil {
			return errors.New("no xdg-open on the PATH")
		}
		cmd = exec.Command("xdg-open", url)
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { _ = cmd.Wait() }()
	return nil
}

<?php

declare(strict_types=1);

namespace App\Interop;

use Psr\Log\AbstractLogger;

/** Log lines on stderr, so that a test shows what the PHP worker said when it fails. */
final class StderrLogger extends AbstractLogger
{
    public function log($level, $message, array $context = []): void
    {
        $replace = [];
        foreach ($context as $key => $value) {
            if (\is_scalar($value) || $value instanceof \Stringable) {
                $replace['{'.$key.'}'] = (string) $value;
            } elseif ($value instanceof \Throwable) {
                $replace['{'.$key.'}'] = \get_class($value).': '.$value->getMessage();
            }
        }
        $line = sprintf("[php %d] %s %s\n", getmypid(), $level, strtr((string) $message, $replace));
        if (isset($context['exception']) && $context['exception'] instanceof \Throwable) {
            $error = $context['exception'];
            $line .= sprintf("    %s: %s\n", \get_class($error), $error->getMessage());
        }
        fwrite(\STDERR, $line);
    }
}
